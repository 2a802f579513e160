package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // an operation failed
	exitUsage   = 2 // bad arguments or configuration
	// An interrupted command exits 128+signal, as a shell reports a
	// process the signal killed: 130 for SIGINT (Ctrl-C), 143 for SIGTERM.
)

// interrupted is the cause main cancels the root context with when a
// SIGINT or SIGTERM arrives. Like os/signal's own cause it is
// context.Canceled to errors.Is, so everything below treats it as a
// cancellation.
type interrupted struct{ sig syscall.Signal }

func (e interrupted) Error() string {
	name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[e.sig]
	if name == "" {
		name = e.sig.String()
	}
	return "interrupted by " + name
}

func (e interrupted) Is(target error) bool {
	return target == context.Canceled || target == dump.ErrStopped
}

// exitCode is the shell's status for a process the signal killed.
func (e interrupted) exitCode() int { return 128 + int(e.sig) }

// interruptedMessage says what an interrupted command left behind in the
// user's words: the libraries below report the cancellation as "context
// canceled", which names no cause.
func interruptedMessage(err error, cause interrupted) string {
	msg := err.Error()
	for _, goism := range []string{"context canceled", "operation was canceled"} {
		msg = strings.ReplaceAll(msg, goism, cause.Error())
	}
	if !strings.Contains(msg, cause.Error()) {
		msg = cause.Error() + ": " + msg
	}
	return msg
}

// usageError is a mistake in the command line: exit 2 with usage help.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// configError is a bad environment: exit 2.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(m *Main, ctx context.Context, args []string) error
	// usageExit, when set, replaces exitUsage for this command's flag
	// errors: healthcheck's caller is Docker, for which 2 is reserved.
	usageExit int
	// exitHelp, when set, replaces exitStatusHelp in the command's help.
	exitHelp string
}

// commands is filled by each cmd_*.go file's init-free table entry below.
func commands() []command {
	cs := []command{
		captureCommand,
		listCommand,
		versionCommand,
		healthcheckCommand,
		daemonCommand, schedulesCommand,
		infoCommand, downloadCommand, urlCommand, restoreCommand, verifyCommand, deleteCommand, pruneCommand,
	}
	cs = append(cs, extraCommands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	return cs
}

// extraCommands lets later files add commands without editing this list.
var extraCommands []command

// Main is the program, built once and run once; tests drive it in-process.
type Main struct {
	Stdout io.Writer
	Stderr io.Writer

	cmd     command // the command being run
	cfg     *config.Config
	log     *slog.Logger
	store   storage.Store
	closers []func()
}

// NewMain returns a Main writing to the process's stdout and stderr.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr}
}

// Close releases what Run built.
func (m *Main) Close() {
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i]()
	}
	m.closers = nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// Run executes args (without the program name) and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	name := "daemon"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch {
	case isHelp(name):
		if len(args) > 0 && args[0] == "config" {
			writeConfigReference(m.Stdout)
			return exitOK
		}
		if len(args) > 0 && !isHelp(args[0]) { // help help is the usage, not a loop
			return m.Run(ctx, []string{args[0], "--help"})
		}
		m.usage(m.Stdout)
		return exitOK
	case name == "-v" || name == "--version":
		name = "version"
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(m.Stderr, "pgbackups: unknown command %s%s\n\n", shown(name), suggestCommand(name))
		m.usage(m.Stderr)
		return exitUsage
	}
	m.cmd = *cmd
	err := cmd.run(m, ctx, args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var intr interrupted
	if errors.As(context.Cause(ctx), &intr) {
		fmt.Fprintf(m.Stderr, "pgbackups %s: %s\n", cmd.name, interruptedMessage(err, intr))
		return intr.exitCode()
	}
	if errors.Is(err, dump.ErrNoIdentity) {
		// An encrypted backup read without PGBACKUPS_AGE_IDENTITY_FILE:
		// the setting is missing, as for any other configuration error.
		err = configError{err}
	}
	var ue usageError
	var ce configError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(m.Stderr, "pgbackups %s: %v\nusage: %s\nRun 'pgbackups %s --help' for details.\n", cmd.name, err, cmd.synopsis(), cmd.name)
		if cmd.usageExit != 0 {
			return cmd.usageExit
		}
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(m.Stderr, "pgbackups: configuration is invalid:\n")
		for _, line := range strings.Split(ce.Error(), "\n") {
			fmt.Fprintf(m.Stderr, "  %s\n", line)
		}
		fmt.Fprintln(m.Stderr, "Nothing was run. `pgbackups help config` lists every variable.")
		return exitUsage
	}
	if cmd.name == "daemon" && m.log != nil {
		// The daemon's stderr is a log stream (JSON, read by Loki or
		// CloudWatch): its last word is a log line too, not free text.
		m.log.Error("daemon stopped on an error", "component", "daemon", "err", err.Error())
		return exitFailure
	}
	fmt.Fprintf(m.Stderr, "pgbackups %s: %v\n", cmd.name, err)
	return exitFailure
}

func (m *Main) usage(w io.Writer) {
	fmt.Fprint(w, `pgbackups keeps a PostgreSQL database backed up: pg_dump, streamed through
zstd into S3 or a local directory, on a schedule, with a health endpoint.

Usage: pgbackups <command> [flags]   (no command runs the daemon)

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help config  every environment variable, its default and meaning

'pgbackups help COMMAND' (or 'pgbackups COMMAND --help') describes one command.
Configuration is read from PGBACKUPS_* environment variables.
`+exitStatusHelp)
}

// exitStatusHelp ends every help text.
const exitStatusHelp = `Exit status: 0 success, 1 an operation failed, 2 usage or configuration error,
130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM).
`

// idHelp explains the [ID|latest] argument of the commands that take one.
const idHelp = `ID is a backup id as 'pgbackups list' shows it, such as 20261125-020000-k3f9.
latest, the default, is the newest completed backup; a newer backup whose
manifest cannot be read, or a newest one whose data object is missing or cut
short, stops it with an error naming that backup.
`

// readsBackups are the commands that read backups' contents, and so the
// age identities of encrypted ones.
var readsBackups = []string{"restore", "download", "verify"}

// identityHelp tells the commands that read backups where the key to an
// encrypted one comes from.
const identityHelp = `A backup encrypted with PGBACKUPS_AGE_RECIPIENTS is read with the age
identities in the file PGBACKUPS_AGE_IDENTITY_FILE names (as age-keygen wrote it).
`

// synopsis is the command's usage line.
func (c command) synopsis() string {
	return strings.TrimSpace("pgbackups " + c.name + " " + c.args)
}

// suggestCommand is " (did you mean X?)" for a mistyped command, or "".
func suggestCommand(name string) string {
	if name == "config" {
		return " (did you mean 'pgbackups help config'?)"
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	if s := closest(name, names); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", s)
	}
	return ""
}

// closest is the candidate within a small edit distance of s (a typo, a
// missing or doubled letter), or a unique one s is a prefix of; "" if none.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) <= 4 {
		bestD = 2
	}
	var prefixed []string
	for _, c := range candidates {
		if d := config.EditDistance(s, c); d < bestD {
			best, bestD = c, d
		}
		// "rest" for restore, "to-db" for to.
		if len(s) >= 2 && len(c) >= 2 && (strings.HasPrefix(c, s) || strings.HasPrefix(s, c+"-")) {
			prefixed = append(prefixed, c)
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	return best
}

// flags returns a FlagSet for the running command whose errors go to the caller.
func (m *Main) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("pgbackups "+m.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses flags anywhere among the positional arguments (so
// `info latest --json` works) and returns the positionals. -h prints help.
func (m *Main) parseFlags(fs *flag.FlagSet, args []string, maxPositional int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				m.printHelp(fs)
				return nil, flag.ErrHelp
			}
			return nil, usageError{flagError(fs, err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) > maxPositional {
		return nil, usagef("unexpected argument %s", shown(pos[maxPositional]))
	}
	return pos, nil
}

// printHelp writes the running command's help to stdout: its synopsis,
// summary, what ID means where it takes one, its flags as they are typed
// (--name), and the exit statuses.
func (m *Main) printHelp(fs *flag.FlagSet) {
	c := m.cmd
	w := m.Stdout
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis(), c.summary)
	if strings.Contains(c.args, "[ID|latest]") {
		fmt.Fprintf(w, "\n%s", idHelp)
	}
	if slices.Contains(readsBackups, c.name) {
		fmt.Fprintf(w, "\n%s", identityHelp)
	}
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags (before or after the arguments):")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			if isBoolFlag(f) {
				name = ""
			}
			fmt.Fprintf(w, "  %s%s", dashes(f.Name), f.Name)
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			fmt.Fprintf(w, "\n      %s", usage)
			if !isZeroDefault(f) {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
	help := exitStatusHelp
	if c.exitHelp != "" {
		help = c.exitHelp
	}
	fmt.Fprintf(w, "\n%s", help)
}

// dashes is how the help spells a flag: -o, but --json.
func dashes(name string) string {
	if len(name) == 1 {
		return "-"
	}
	return "--"
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "false", "0":
		return true
	}
	return false
}

// flagError rewords the flag package's errors in the terms the help uses:
// --name, what a value should look like, and the likely flag for a typo.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if s := closest(strings.TrimLeft(name, "-"), names); s != "" {
			return fmt.Sprintf("%s (did you mean %s%s?)", msg, dashes(s), s)
		}
		if len(names) == 0 {
			return msg + " (this command takes no flags)"
		}
		return msg
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("flag %s%s needs a value", dashes(name), name)
	}
	// invalid value "abc" for flag -jobs: parse error
	// invalid boolean value "maybe" for -json: parse error
	for _, pre := range []string{"invalid value ", "invalid boolean value "} {
		rest, ok := strings.CutPrefix(msg, pre)
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, " for ")
		if i < 0 {
			break
		}
		value := rest[:i]
		name := strings.TrimPrefix(strings.TrimPrefix(rest[i+len(" for "):], "flag "), "-")
		if j := strings.Index(name, ":"); j >= 0 {
			name = name[:j]
		}
		want := "a valid value"
		if f := fs.Lookup(name); f != nil {
			switch fmt.Sprintf("%T", f.Value) {
			case "*flag.intValue", "*flag.int64Value":
				want = "a whole number"
			case "*flag.durationValue":
				want = "a duration such as 90s, 5m or 1h"
			case "*flag.boolValue":
				want = "true or false"
			}
		}
		return fmt.Sprintf("%s%s %s: want %s", dashes(name), name, value, want)
	}
	return msg
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// setup loads the configuration and builds the logger and store, once.
func (m *Main) setup(ctx context.Context) error {
	if m.cfg != nil {
		return nil
	}
	load := config.Load
	switch {
	case m.cmd.name == "daemon" || m.cmd.name == "prune":
		load = config.LoadApplyingRetention // each bad variable said at once
	case slices.Contains(readsBackups, m.cmd.name):
		load = config.LoadReadingBackups
	}
	cfg, err := load()
	if err != nil {
		return configError{err}
	}
	m.log = newLogger(m.Stderr, cfg.LogFormat, cfg.LogLevel)
	if n := dump.SweepStaleTempFiles(); n > 0 {
		m.log.Info("removed temporary files (passfiles, restore archives) left by pgbackups processes that are gone", "component", m.cmd.name, "count", n, "dir", os.TempDir())
	}
	store, err := openStore(ctx, cfg, m.cmd.name == "capture" || m.cmd.name == "daemon", m.log.With("component", m.cmd.name))
	if err != nil {
		return err
	}
	m.cfg, m.store = cfg, store
	return nil
}

// shown quotes a command-line argument for an error message, except one
// that looks like a connection string: put where an id or a command
// belongs (a forgotten --to), it may carry a password into a terminal's
// scrollback, a CI log or the journal.
func shown(arg string) string {
	if strings.Contains(arg, "://") || strings.Contains(strings.ToLower(arg), "password") {
		return "(a connection string, not shown)"
	}
	return strconv.Quote(arg)
}

// identities are the age identities of PGBACKUPS_AGE_IDENTITY_FILE, which
// open encrypted backups (validated at setup), for reading man. Set, and
// man is not encrypted, it says so: an operator who encrypts every backup
// learns of one stored some other way (before encryption was set up, or
// by something with write access to storage).
func (m *Main) identities(man storage.Manifest) ([]age.Identity, error) {
	ids, err := m.cfg.Identities()
	if err != nil {
		return nil, configError{fmt.Errorf("PGBACKUPS_AGE_IDENTITY_FILE: %w", err)}
	}
	if len(ids) > 0 && man.Encryption == "" && man.OK() {
		m.log.Warn("this backup is not encrypted, though PGBACKUPS_AGE_IDENTITY_FILE is set: it was taken before PGBACKUPS_AGE_RECIPIENTS was, or stored by something else", "component", m.cmd.name, "backup", man.ID)
	}
	if fi, err := os.Stat(m.cfg.AgeIdentityFile); err == nil && len(ids) > 0 && fi.Mode().Perm()&0o044 != 0 {
		m.log.Warn("the age identity file is readable by its group or by others: the secret key is in it", "component", m.cmd.name, "path", m.cfg.AgeIdentityFile, "mode", fi.Mode().Perm().String())
	}
	return ids, nil
}

// newLogger builds the one logger: text on a terminal, JSON otherwise.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// openStore opens the backend PGBACKUPS_STORAGE_URL names. A local
// directory is created only when create is set (capture and the daemon
// write backups); the commands that read them want it to exist.
func openStore(ctx context.Context, cfg *config.Config, create bool, log *slog.Logger) (storage.Store, error) {
	raw := cfg.StorageURL
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("PGBACKUPS_STORAGE_URL: %w", err)
	}
	switch u.Scheme {
	case "s3":
		bucket, prefix, err := s3.ParseURL(raw)
		if err != nil {
			return nil, configError{fmt.Errorf("PGBACKUPS_STORAGE_URL: %w", err)}
		}
		st, err := s3.New(ctx, s3.Options{
			Bucket:          bucket,
			Prefix:          prefix,
			PathStyle:       cfg.S3PathStyle,
			AccessKeyID:     cfg.S3AccessKeyID,
			SecretAccessKey: cfg.S3SecretAccessKey,
			PartSize:        int64(cfg.S3PartSize),
			Concurrency:     cfg.S3Concurrency,
			ReadStall:       cfg.StallTimeout.D(),
		})
		if errors.Is(err, s3.ErrNoRegion) {
			return nil, configError{errors.New("AWS_REGION: S3 needs a region and none is set: set AWS_REGION, or region in the AWS shared config (~/.aws/config)")}
		}
		if err != nil {
			return nil, err
		}
		return st, nil
	case "file", "":
		// config.Validate rejected file URLs with a host or no path.
		dir := u.Path
		if u.Scheme == "" {
			dir = filepath.Clean(raw)
		}
		if create {
			st, err := file.New(dir)
			if err == nil {
				if werr := st.Exposed(); werr != nil {
					log.Warn("the local store is open to every user", "err", werr)
				}
			}
			return st, err
		}
		st, err := file.Open(dir)
		if err != nil && os.Getenv("PGBACKUPS_STORAGE_URL") == "" {
			err = fmt.Errorf("unset, so the default local directory is used (%w); set PGBACKUPS_STORAGE_URL to where the backups are", err)
		}
		if err != nil {
			return nil, configError{fmt.Errorf("PGBACKUPS_STORAGE_URL: %w", err)}
		}
		return st, nil
	}
	return nil, configError{fmt.Errorf("PGBACKUPS_STORAGE_URL: unsupported scheme %q", u.Scheme)}
}

// conn parses the configured database connection.
func (m *Main) conn() (dump.Conn, error) {
	c, err := dump.ParseConn(m.cfg.DatabaseURL)
	if err != nil {
		name := config.SourceVar("DATABASE_URL")
		if m.cfg.DatabaseURL == "" {
			name = "libpq's PG* variables (PGBACKUPS_DATABASE_URL and DATABASE_URL are unset)"
		}
		return dump.Conn{}, configError{fmt.Errorf("%s: %w", name, err)}
	}
	return c, nil
}

func (m *Main) catalog() storage.Catalog { return storage.Catalog{Store: m.store} }

var versionCommand = command{
	name:    "version",
	summary: "print version, commit and Go version",
	run: func(m *Main, ctx context.Context, args []string) error {
		if _, err := m.parseFlags(m.flags(), args, 0); err != nil {
			return err
		}
		v, c := version, commit
		// `go install ...@v1.2.3` builds without -ldflags: the module
		// version and VCS stamp are still in the build info.
		if info, ok := debug.ReadBuildInfo(); ok && v == "dev" {
			if mv := info.Main.Version; mv != "" && mv != "(devel)" {
				v = mv
			}
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && c == "unknown" && len(s.Value) >= 12 {
					c = s.Value[:12]
				}
			}
		}
		fmt.Fprintf(m.Stdout, "pgbackups %s (commit %s, %s)\n", v, c, runtime.Version())
		return nil
	},
}
