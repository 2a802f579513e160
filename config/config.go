// Package config reads pgbackups' configuration from the environment: one
// envconfig struct, then Validate, which reports every bad variable at once.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kelseyhightower/envconfig"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// Prefix is the prefix of every pgbackups environment variable.
const Prefix = "PGBACKUPS"

// Config is everything pgbackups reads from its environment. The `desc` tags
// are the configuration reference: README's table is generated from them.
type Config struct {
	DatabaseURL string `envconfig:"DATABASE_URL" secret:"true" desc:"PostgreSQL URL or keyword/value DSN of the database to back up. Falls back to DATABASE_URL, then libpq's PGHOST/PGUSER/PGDATABASE/... variables."`
	DumpURL     string `envconfig:"DUMP_URL" secret:"true" desc:"Optional URL of a read replica to run pg_dump against; pre-flight, locks and bookkeeping still use DATABASE_URL."`
	StorageURL  string `envconfig:"STORAGE_URL" desc:"Where backups live: s3://bucket/prefix or file:///path or a plain path. Unset: $STATE_DIRECTORY, /var/lib/pgbackups if it exists and is writable, else $XDG_DATA_HOME/pgbackups or ~/.local/share/pgbackups."`

	S3PathStyle       *bool  `envconfig:"S3_PATH_STYLE" desc:"Path-style S3 addressing (bucket in the path). Default true when a custom endpoint (AWS_ENDPOINT_URL_S3) is set."`
	S3PartSize        Size   `envconfig:"S3_PART_SIZE" default:"8MiB" desc:"Multipart upload part size; grows with the database size so a 5 TiB dump fits S3's 10,000 parts (concurrency then drops to keep memory within S3_PART_SIZE x S3_CONCURRENCY)."`
	S3Concurrency     int    `envconfig:"S3_CONCURRENCY" default:"4" desc:"Parts uploaded in parallel (1-64). Upload memory is about S3_PART_SIZE x (S3_CONCURRENCY + 2)."`
	S3AccessKeyID     string `envconfig:"S3_ACCESS_KEY_ID" secret:"true" desc:"Static S3 access key; unset uses the AWS SDK chain (AWS_ACCESS_KEY_ID, shared files, instance roles)."`
	S3SecretAccessKey string `envconfig:"S3_SECRET_ACCESS_KEY" secret:"true" desc:"Static S3 secret key, paired with S3_ACCESS_KEY_ID."`

	CompressionLevel int    `envconfig:"COMPRESSION_LEVEL" default:"1" desc:"zstd level 1-22 (default 1: in bench/capture.sh it stored within 1% of level 3's size in 70% of its time); klauspost/compress maps it to fastest (1-2), default (3-5), better (6-9) or best (10+)."`
	PgBinDir         string `envconfig:"PG_BIN_DIR" desc:"Directory searched first for pg_dump/pg_restore; then /usr/lib/postgresql/*/bin and PATH (pg_dump: the server's major version, else the oldest newer one; pg_restore: the same for the target server, and at least the backup's pg_dump version)."`
	Globals          bool   `envconfig:"GLOBALS" default:"true" desc:"Also store pg_dumpall --globals-only (roles, tablespaces) next to each dump."`
	AgeRecipients    string `envconfig:"AGE_RECIPIENTS" desc:"age public keys (age1..., as age-keygen prints; several separated by commas or spaces) to encrypt new backups to, after compression: the data and the globals. Unset: stored unencrypted. Reading an encrypted backup then needs AGE_IDENTITY_FILE."`
	AgeIdentityFile  string `envconfig:"AGE_IDENTITY_FILE" desc:"File holding the age identities (AGE-SECRET-KEY-1..., one per line, as age-keygen writes) that open encrypted backups: restore, download and verify read it. Backing up needs only AGE_RECIPIENTS, so keep it off the daemon's host."`

	Schedule      string   `envconfig:"SCHEDULE" desc:"When the daemon backs up: '02:00 America/Los_Angeles', '02:00,14:00 CET', or cron '0 */6 * * *' (CRON_TZ= prefix allowed). Unset: no scheduled backups."`
	KeepLast      int      `envconfig:"KEEP_LAST" default:"0" desc:"Retention: keep the N newest good backups. The four KEEP_* may not all be 0 (that keeps only the newest backup, not every one): set KEEP_LAST=1 to keep only the newest."`
	KeepDaily     int      `envconfig:"KEEP_DAILY" default:"7" desc:"Retention: keep the newest good backup of each of the N most recent days that have one (days without a good backup are not counted), in the schedule's time zone (prune without SCHEDULE: the machine's local time zone)."`
	KeepWeekly    int      `envconfig:"KEEP_WEEKLY" default:"4" desc:"Retention: keep the newest good backup of each of the N most recent ISO weeks that have one (weeks without a good backup are not counted)."`
	KeepMonthly   int      `envconfig:"KEEP_MONTHLY" default:"0" desc:"Retention: keep the newest good backup of each of the N most recent calendar months that have one (months without a good backup are not counted)."`
	OrphanGrace   Duration `envconfig:"ORPHAN_GRACE" default:"24h" desc:"prune removes objects without a manifest, and unfinished S3 multipart uploads or temporary files, once nothing has been written to them for this long (at least 1h: a backup still being written has no manifest yet)."`
	RetryMax      int      `envconfig:"RETRY_MAX" default:"3" desc:"Retries of a failed scheduled backup (never past the next scheduled run)."`
	RetryBackoff  Duration `envconfig:"RETRY_BACKOFF" default:"1m" desc:"First retry delay; doubles each retry."`
	RetryMaxTime  Duration `envconfig:"RETRY_MAX_TIME" default:"2h" desc:"Give up retrying after this long."`
	WebhookURL    string   `envconfig:"WEBHOOK_URL" secret:"true" desc:"POSTed a JSON event on backup success and failure."`
	PingURL       string   `envconfig:"PING_URL" secret:"true" desc:"healthchecks.io-style base URL: GET URL/start, URL on success, URL/fail on failure."`
	HTTPAddr      string   `envconfig:"HTTP_ADDR" default:":8080" desc:"Address of /healthz, /livez and /metrics; 'off' disables."`
	HealthGrace   Duration `envconfig:"HEALTH_GRACE" default:"1h" desc:"/healthz turns 503 (overdue) when the run due after the last success has not succeeded within this of its time (a backup still running gets until the next run plus this)."`
	ShutdownGrace Duration `envconfig:"SHUTDOWN_GRACE" default:"30s" desc:"The daemon only: on SIGTERM or SIGINT, how long an in-flight backup may finish before it is aborted. The capture command aborts its backup on the first signal."`
	LogFormat     string   `envconfig:"LOG_FORMAT" default:"auto" desc:"auto (text on a terminal, JSON otherwise), text or json."`
	LogLevel      string   `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error."`

	Nice              int      `envconfig:"NICE" default:"10" desc:"CPU niceness (0-19) of pg_dump and of the thread compressing its output (of the whole process under the capture command): the client side. BACKEND_NICE lowers the server side."`
	BackendNice       int      `envconfig:"BACKEND_NICE" default:"10" desc:"CPU niceness (0-19; 0 leaves it alone) of the PostgreSQL backend running the dump's COPY, where pgbackups can see it (same host and PID namespace) and may renice it (the server's user, or CAP_SYS_NICE); otherwise the backup logs why and goes on."`
	IONiceClass       string   `envconfig:"IONICE_CLASS" default:"idle" desc:"IO priority of pg_dump and of the compressing thread: idle, best-effort[:0-7] or none."`
	MaxRate           Rate     `envconfig:"MAX_RATE" default:"auto" desc:"Throttle on uncompressed dump bytes per second (e.g. 40MiB), auto (slow down when the application's load rises above its level before the dump) or off. At least 64KiB. Backpressure slows the server-side COPY."`
	LockWaitTimeout   Duration `envconfig:"LOCK_WAIT_TIMEOUT" default:"30s" desc:"pg_dump --lock-wait-timeout: give up instead of queueing behind DDL."`
	StallTimeout      Duration `envconfig:"STALL_TIMEOUT" default:"30m" desc:"Abort a backup (the daemon retries it) when pg_dump has produced no output for this long and storage has taken none, or a call to storage before or after the stream (location check, globals, manifest) takes this long: a hung S3 endpoint or a dump source gone silent. An S3 request unanswered for this long fails (list, restore, download, verify, prune; a read broken mid-object is resumed first), and so does the daemon's retention pass as a whole. At least 1m; 0 disables."`
	OnBlocking        string   `envconfig:"ON_BLOCKING" default:"warn" desc:"When the dump blocks other sessions longer than BLOCKING_THRESHOLD: warn or abort."`
	BlockingThreshold Duration `envconfig:"BLOCKING_THRESHOLD" default:"10s" desc:"How long the dump may block another session before ON_BLOCKING applies."`
	LogicalLimit      Size     `envconfig:"LOGICAL_LIMIT" default:"20GB" desc:"Warn (logs, /healthz, metrics) when the database is larger than this: use physical backups there."`
}

// secretFileSuffix names the variable that holds a secret's file path.
const secretFileSuffix = "_FILE"

// FieldError is one bad variable.
type FieldError struct {
	Var string // the environment variable, e.g. PGBACKUPS_NICE
	Err error
}

func (e FieldError) Error() string { return e.Var + ": " + e.Err.Error() }

// Errors is every problem found while loading; it prints one per line.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads the environment into a Config and validates it. Every bad
// variable is reported in the returned Errors, not just the first.
func Load() (*Config, error) { return load(false, false) }

// LoadApplyingRetention is Load for the commands that apply retention
// (the daemon, prune): CheckRetention's error is reported with the
// others.
func LoadApplyingRetention() (*Config, error) { return load(true, false) }

// LoadReadingBackups is Load for the commands that read backups' contents
// (restore, download, verify): PGBACKUPS_AGE_IDENTITY_FILE is read and
// checked with the others. No other command reads it: the daemon's host
// should not hold the identity.
func LoadReadingBackups() (*Config, error) { return load(false, true) }

func load(retention, identities bool) (*Config, error) {
	var c Config
	var errs Errors
	t := reflect.TypeOf(c)
	v := reflect.ValueOf(&c).Elem()
	// envconfig stops at the first bad field. Processing each field through a
	// one-field struct of its own keeps envconfig's parsing and defaults while
	// collecting every error. The one-field struct is tagged with the whole
	// variable name and processed without a prefix: given a prefix and a
	// tag, envconfig also reads the bare tag name when the prefixed variable
	// is unset, and an unrelated HTTP_ADDR, SCHEDULE or WEBHOOK_URL in the
	// environment would configure pgbackups.
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := reflect.StructTag(strings.Replace(string(f.Tag), `envconfig:"`+f.Tag.Get("envconfig")+`"`, `envconfig:"`+VarName(f)+`"`, 1))
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: tag}}))
		if err := envconfig.Process("", one.Interface()); err != nil {
			var pe *envconfig.ParseError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			var ne *strconv.NumError
			if errors.As(err, &ne) {
				switch {
				case f.Type.Kind() == reflect.Bool || f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Bool:
					err = fmt.Errorf("%q is not true or false", ne.Num)
				case errors.Is(ne.Err, strconv.ErrRange):
					err = fmt.Errorf("%q is out of range", ne.Num)
				default:
					err = fmt.Errorf("%q is not a whole number", ne.Num)
				}
			}
			errs = append(errs, FieldError{Var: VarName(f), Err: err})
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
	errs = append(errs, c.readSecretFiles()...)
	errs = append(errs, unknownVars(os.Environ())...)
	c.applyFallbacks()
	errs = append(errs, c.Validate()...)
	// A KEEP_* that did not parse is left 0, which is not what it says:
	// its own error is the one to report.
	keepParsed := !slices.ContainsFunc(errs, func(e FieldError) bool { return strings.HasPrefix(e.Var, Prefix+"_KEEP_") })
	if err := c.CheckRetention(); retention && keepParsed && err != nil {
		errs = append(errs, err.(FieldError))
	}
	if _, err := c.Identities(); identities && err != nil {
		errs = append(errs, FieldError{SourceVar("AGE_IDENTITY_FILE"), err})
	}
	if len(errs) > 0 {
		for i, e := range errs {
			// A value in quotes: an env file written for a shell, loaded
			// by something that keeps them (the runbook's loop, Docker's
			// --env-file). Said once, whatever the check that failed.
			if h := quotedHint(os.Getenv(e.Var)); h != "" && !strings.Contains(e.Err.Error(), h) {
				errs[i].Err = fmt.Errorf("%w%s", e.Err, h)
			}
		}
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Var < errs[j].Var })
		return nil, errs
	}
	return &c, nil
}

// VarName is the environment variable a Config field is read from.
func VarName(f reflect.StructField) string {
	return Prefix + "_" + f.Tag.Get("envconfig")
}

// Fields lists the Config fields in declaration order, for the generated
// configuration reference.
func Fields() []reflect.StructField {
	t := reflect.TypeOf(Config{})
	fs := make([]reflect.StructField, t.NumField())
	for i := range fs {
		fs[i] = t.Field(i)
	}
	return fs
}

// readSecretFiles fills secret fields from NAME_FILE variables, the way
// Docker and Kubernetes secrets are mounted.
func (c *Config) readSecretFiles() Errors {
	var errs Errors
	v := reflect.ValueOf(c).Elem()
	for i, f := range Fields() {
		if f.Tag.Get("secret") != "true" {
			continue
		}
		name := VarName(f)
		path, ok := os.LookupEnv(name + secretFileSuffix)
		if !ok {
			continue
		}
		if _, both := os.LookupEnv(name); both {
			errs = append(errs, FieldError{name + secretFileSuffix, fmt.Errorf("set together with %s; set one", name)})
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, FieldError{name + secretFileSuffix, unreadablePath(path, err,
				fmt.Sprintf("it is no absolute path, and may be the secret itself; %s takes the value, %s a file's path", name, name+secretFileSuffix))})
			continue
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			errs = append(errs, FieldError{name + secretFileSuffix, fmt.Errorf("%s is empty", path)})
			continue
		}
		v.Field(i).SetString(s)
	}
	return errs
}

// unreadablePath is err, from opening path, the value of a variable that
// names a file; when path looks less like a path than like a secret put
// there by mistake, without path (os's errors quote it), and with why.
func unreadablePath(path string, err error, why string) error {
	if plainPath(path) && !(errors.Is(err, fs.ErrNotExist) && !parentExists(path)) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot read the file it names (not shown: %s)%s: %w", why, quotedHint(path), err)
}

// parentExists reports whether path's directory exists and is not the
// root: a missing file there is a path mistyped, where "/" followed by a
// secret (an AWS secret key may start with '/') is no path at all.
func parentExists(path string) bool {
	dir := filepath.Dir(path)
	if dir == "/" {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// plainPath reports whether a file variable's value (a *_FILE secret,
// AGE_IDENTITY_FILE) looks like a path,
// which errors may show, rather than a secret put there by mistake.
func plainPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.ContainsAny(p, "@: \t")
}

// unknownVars reports PGBACKUPS_* variables that match no field: a typo
// (PGBACKUPS_KEEP_DAYLY) must not silently fall back to a default.
func unknownVars(environ []string) Errors {
	known := map[string]bool{}
	for _, f := range Fields() {
		known[VarName(f)] = true
		if f.Tag.Get("secret") == "true" {
			known[VarName(f)+secretFileSuffix] = true
		}
	}
	var errs Errors
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") && !known[name] && !strings.HasPrefix(name, Prefix+"_TEST_") && !serviceLink.MatchString(name) {
			hint := suggest(name, known)
			if sdk, ok := awsVariables[strings.TrimPrefix(name, Prefix+"_")]; ok {
				hint = "; the AWS SDK's own " + sdk + " sets that"
			}
			errs = append(errs, FieldError{name, fmt.Errorf("unknown variable%s", hint)})
			continue
		}
		// The prefix itself mistyped: the setting would be silently
		// ignored (a storage URL, and backups go to the default directory).
		// Only for a name of ours after it: other tools' variables (PG_BACKUP_
		// of backup scripts, a Kubernetes Service named pgbackup) are not.
		for _, typo := range []string{"PGBACKUP_", "PG_BACKUPS_"} {
			if rest, ok := strings.CutPrefix(name, typo); ok && known[Prefix+"_"+rest] {
				errs = append(errs, FieldError{name, fmt.Errorf("unknown variable: pgbackups reads %s_%s", Prefix, rest)})
				break
			}
		}
	}
	return errs
}

// serviceLink matches the variables Kubernetes puts in every container of
// a namespace with a Service named pgbackups (enableServiceLinks, on by
// default): PGBACKUPS_SERVICE_HOST, PGBACKUPS_SERVICE_PORT[_NAME],
// PGBACKUPS_PORT and PGBACKUPS_PORT_8080_TCP[_PROTO|_PORT|_ADDR]. They are
// not settings, and a daemon that refused them would not start.
var serviceLink = regexp.MustCompile(`^` + Prefix + `_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// awsVariables are S3 settings pgbackups leaves to the AWS SDK, by the
// names a user might guess for them.
var awsVariables = map[string]string{
	"S3_ENDPOINT": "AWS_ENDPOINT_URL_S3", "S3_ENDPOINT_URL": "AWS_ENDPOINT_URL_S3", "ENDPOINT_URL": "AWS_ENDPOINT_URL_S3",
	"S3_REGION": "AWS_REGION", "REGION": "AWS_REGION", "AWS_REGION": "AWS_REGION", "S3_SESSION_TOKEN": "AWS_SESSION_TOKEN",
}

// suggest names the known variable closest to a typo, if one is close.
func suggest(name string, known map[string]bool) string {
	best, bestD := "", 4
	for k := range known {
		if d := EditDistance(name, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (see `pgbackups help config` for the list)"
	}
	return "; did you mean " + best + "?"
}

// EditDistance is how many single-byte edits (insert, delete, replace, or
// swap two neighbours: "lsit" for list) turn a into b, the optimal string
// alignment distance. Suggestions for a mistyped name use it.
func EditDistance(a, b string) int {
	pprev := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pprev[j-2]+1)
			}
		}
		pprev, prev, cur = prev, cur, pprev
	}
	return prev[len(b)]
}

// applyFallbacks fills values that come from outside the PGBACKUPS_ prefix.
func (c *Config) applyFallbacks() {
	if c.DatabaseURL == "" {
		c.DatabaseURL = os.Getenv("DATABASE_URL")
	}
	if c.StorageURL == "" {
		c.StorageURL = DefaultStorageDir()
	}
}

// DefaultStorageDir is where backups go when PGBACKUPS_STORAGE_URL is unset:
// systemd's StateDirectory, the conventional /var/lib/pgbackups when this
// user can write it, else the user's data directory.
func DefaultStorageDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if writable("/var/lib/pgbackups") {
		return "/var/lib/pgbackups"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "pgbackups")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "pgbackups")
	}
	return filepath.Join(os.TempDir(), "pgbackups")
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".pgbackups-probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// Validate checks values envconfig cannot: ranges, enums, and values that
// only make sense together. It returns every problem.
func (c *Config) Validate() Errors {
	var errs Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{SourceVar(field), fmt.Errorf(format, args...)})
	}
	for _, v := range []struct{ name, raw string }{
		{SourceVar("DATABASE_URL"), c.DatabaseURL},
		{SourceVar("DUMP_URL"), c.DumpURL},
	} {
		// Unset means libpq's PG* variables, which only commands that
		// connect need; they report those when they parse them.
		if v.raw == "" {
			continue
		}
		if _, err := pgx.ParseConfig(v.raw); err != nil {
			errs = append(errs, FieldError{v.name, ConnParseError(err, v.raw)})
		} else if err := ConnAtError(v.raw); err != nil {
			errs = append(errs, FieldError{v.name, err})
		}
	}
	if strings.TrimSpace(c.StorageURL) == "" {
		bad("STORAGE_URL", "is empty")
	} else if u, err := url.Parse(c.StorageURL); err != nil {
		bad("STORAGE_URL", "not a URL or path")
	} else {
		switch u.Scheme {
		case "":
		case "s3":
			if _, _, err := s3.ParseURL(c.StorageURL); err != nil {
				bad("STORAGE_URL", "%v", err)
			}
		case "file":
			switch {
			case u.Opaque != "" || u.Path == "":
				// file:backups is an opaque URL: url.Parse gives it no path.
				bad("STORAGE_URL", "%q is not an absolute file URL: use file:///absolute/path, or a plain path", c.StorageURL)
			case u.Host != "" && u.Host != "localhost":
				bad("STORAGE_URL", "file URL names host %q: use file:///absolute/path, or a plain path", u.Host)
			}
		default:
			bad("STORAGE_URL", "scheme %q is not supported (use s3://bucket/prefix or file:///path)", u.Scheme)
		}
	}
	const minPart, maxPart = 5 << 20, 5 << 30
	if c.S3PartSize < minPart || c.S3PartSize > maxPart {
		bad("S3_PART_SIZE", "%s is outside S3's limits (5MiB to 5GiB)", c.S3PartSize)
	}
	if c.S3Concurrency < 1 || c.S3Concurrency > 64 {
		bad("S3_CONCURRENCY", "%d is outside 1-64", c.S3Concurrency)
	}
	if (c.S3AccessKeyID == "") != (c.S3SecretAccessKey == "") {
		bad("S3_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together")
	}
	if c.CompressionLevel < 1 || c.CompressionLevel > 22 {
		bad("COMPRESSION_LEVEL", "%d is outside zstd's 1-22", c.CompressionLevel)
	}
	if c.PgBinDir != "" {
		if st, err := os.Stat(c.PgBinDir); err != nil || !st.IsDir() {
			bad("PG_BIN_DIR", "%s is not a directory", c.PgBinDir)
		}
	}
	if _, err := schedule.Parse(c.Schedule); err != nil {
		bad("SCHEDULE", "%v", err)
	}
	if _, err := c.Recipients(); err != nil {
		bad("AGE_RECIPIENTS", "%v", err)
	}
	for name, n := range map[string]int{"KEEP_LAST": c.KeepLast, "KEEP_DAILY": c.KeepDaily, "KEEP_WEEKLY": c.KeepWeekly, "KEEP_MONTHLY": c.KeepMonthly, "RETRY_MAX": c.RetryMax} {
		if n < 0 {
			bad(name, "%d is negative", n)
		}
	}
	for name, raw := range map[string]string{"WEBHOOK_URL": c.WebhookURL, "PING_URL": c.PingURL} {
		if raw == "" {
			continue
		}
		// The URL may carry a token: never echo it back.
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(name, "is not an http(s) URL")
		}
	}
	if c.HTTPAddr != "off" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("HTTP_ADDR", "%q is not host:port or off", c.HTTPAddr)
		}
	}
	if c.OrphanGrace.D() < time.Hour {
		bad("ORPHAN_GRACE", "%s is under 1h: prune could delete a backup whose manifest is still being written", c.OrphanGrace)
	}
	if c.RetryBackoff.D() <= 0 {
		bad("RETRY_BACKOFF", "must be positive")
	}
	if c.RetryMaxTime.D() <= 0 {
		bad("RETRY_MAX_TIME", "must be positive")
	}
	if c.HealthGrace.D() < 0 {
		bad("HEALTH_GRACE", "%s is negative", c.HealthGrace)
	}
	if c.ShutdownGrace.D() <= 0 {
		bad("SHUTDOWN_GRACE", "must be positive")
	}
	if !oneOf(c.LogFormat, "auto", "text", "json") {
		bad("LOG_FORMAT", "%q is not auto, text or json", c.LogFormat)
	}
	if !oneOf(c.LogLevel, "debug", "info", "warn", "error") {
		bad("LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.Nice < 0 || c.Nice > 19 {
		bad("NICE", "%d is outside 0-19", c.Nice)
	}
	if c.BackendNice < 0 || c.BackendNice > 19 {
		bad("BACKEND_NICE", "%d is outside 0-19", c.BackendNice)
	}
	if _, _, err := ParseIONice(c.IONiceClass); err != nil {
		bad("IONICE_CLASS", "%v", err)
	}
	if !oneOf(c.OnBlocking, "warn", "abort") {
		bad("ON_BLOCKING", "%q is not warn or abort", c.OnBlocking)
	}
	if c.LockWaitTimeout.D() <= 0 {
		bad("LOCK_WAIT_TIMEOUT", "must be positive: pg_dump would queue forever behind DDL")
	}
	if d := c.StallTimeout.D(); d != 0 && d < time.Minute {
		bad("STALL_TIMEOUT", "%s is under 1m: pg_dump writes nothing while it reads a large catalog and locks its tables, which can take minutes (0 disables the check)", d)
	}
	return errs
}

// CheckRetention refuses a policy whose four KEEP_* counts are all 0, for
// the commands that apply retention (the daemon, prune). Where 0 turns a
// setting off (STALL_TIMEOUT, BACKEND_NICE), all four at 0 reads as
// "retention off"; but retention always keeps the newest good backup and
// nothing more, so the pass after each backup deleted every other one.
// The other commands do not apply it, and so do not refuse it: a restore
// must not wait on a retention setting.
func (c *Config) CheckRetention() error {
	if c.KeepLast == 0 && c.KeepDaily == 0 && c.KeepWeekly == 0 && c.KeepMonthly == 0 {
		return FieldError{SourceVar("KEEP_LAST"), errKeepOnlyNewest}
	}
	return nil
}

// errKeepOnlyNewest is CheckRetention's error.
var errKeepOnlyNewest = errors.New("0, and so are PGBACKUPS_KEEP_DAILY, PGBACKUPS_KEEP_WEEKLY and PGBACKUPS_KEEP_MONTHLY: " +
	"retention would keep only the newest backup and delete every other one after each backup and on every `pgbackups prune` " +
	"(0 does not turn retention off, and nothing does). To keep only the newest backup, set PGBACKUPS_KEEP_LAST=1; " +
	"to keep every backup, set PGBACKUPS_KEEP_LAST above the number you will ever store (say 100000)")

// SourceVar names the variable the field with tag name came from, so an
// error names what the user set: NAME_FILE for a secret read from a file,
// DATABASE_URL when applyFallbacks took the database URL from there.
func SourceVar(tag string) string {
	name := Prefix + "_" + tag
	if _, inline := os.LookupEnv(name); !inline && os.Getenv(name+secretFileSuffix) != "" && secretVars()[name] {
		return name + secretFileSuffix
	}
	if tag == "DATABASE_URL" && os.Getenv(name) == "" && os.Getenv(name+secretFileSuffix) == "" && os.Getenv("DATABASE_URL") != "" {
		return "DATABASE_URL"
	}
	return name
}

// secretVars is the set of variables that may be given as NAME_FILE.
func secretVars() map[string]bool {
	vs := map[string]bool{}
	for _, f := range Fields() {
		if f.Tag.Get("secret") == "true" {
			vs[VarName(f)] = true
		}
	}
	return vs
}

// ConnAtError refuses a postgres:// URL with more than one '@' before
// its query: one in a password not written %40 ("postgres://app:p@ss@db/app")
// ends the userinfo at the first, as libpq does, and the rest of the
// password becomes the host or the database name, which messages and
// manifests show. A keyword/value string, and a socket directory in the
// query (?host=/run/user@corp), are not affected.
func ConnAtError(raw string) error {
	rest, ok := strings.CutPrefix(raw, "postgresql://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "postgres://"); !ok {
			return nil
		}
	}
	head, _, _ := strings.Cut(rest, "?")
	if strings.Count(head, "@") > 1 {
		return errors.New("holds more than one '@' before its query (not shown: one may be part of a password): write an @ in the user, password or database name as %40")
	}
	return nil
}

// ConnParseError explains why a connection string did not parse without
// repeating it, since it may hold a password: pgx's own message quotes it
// with passwords masked only on a best-effort basis.
func ConnParseError(err error, raw string) error {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		bare := *pe
		bare.ConnString = ""
		msg = strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	}
	if raw != "" {
		msg = strings.ReplaceAll(msg, raw, "<redacted>")
	}
	// The parsers quote the token they stopped at, which may be part of a
	// password: a keyword/value string's ("password=two words" gives
	// missing "=" after "words") and a URL's ("p%zz" gives invalid
	// percent-encoded token: "%zz").
	msg = quotedRE.ReplaceAllStringFunc(msg, func(q string) string {
		if u, err := strconv.Unquote(q); err == nil && u != "=" && strings.Contains(raw, u) {
			return "<redacted>"
		}
		return q
	})
	if raw == "" {
		// Nothing was given: pgx read libpq's PG* variables.
		return fmt.Errorf("the connection settings do not parse: %s", msg)
	}
	return fmt.Errorf("does not parse (not shown: it may hold a password): %s", msg)
}

// quotedRE matches a Go-quoted string in an error message.
var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// IO priority classes, as ioprio_set(2) numbers them.
const (
	IOPrioNone       = 0
	IOPrioBestEffort = 2
	IOPrioIdle       = 3
)

// ParseIONice reads PGBACKUPS_IONICE_CLASS: "idle", "best-effort",
// "best-effort:N" (N 0-7, 7 lowest) or "none".
func ParseIONice(s string) (class, level int, err error) {
	name, lv, hasLevel := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	switch name {
	case "none", "off", "":
		return IOPrioNone, 0, nil
	case "idle":
		if hasLevel {
			return 0, 0, fmt.Errorf("%q: the idle class takes no level", s)
		}
		return IOPrioIdle, 0, nil
	case "best-effort", "be":
		level = 7
		if hasLevel {
			if len(lv) != 1 || lv[0] < '0' || lv[0] > '7' {
				return 0, 0, fmt.Errorf("%q: best-effort level must be 0-7", s)
			}
			level = int(lv[0] - '0')
		}
		return IOPrioBestEffort, level, nil
	}
	return 0, 0, fmt.Errorf("%q is not idle, best-effort[:0-7] or none", s)
}

// redacted is the config with every secret field (secret:"true": URLs with
// passwords, S3 keys, webhook tokens) replaced, for anything that prints it.
func (c Config) redacted() map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(c)
	for _, f := range Fields() {
		fv := v.FieldByIndex(f.Index)
		var val any = nil
		switch {
		case f.Tag.Get("secret") == "true" && !fv.IsZero():
			val = "<redacted>"
		case fv.Kind() == reflect.Pointer && !fv.IsNil():
			val = fv.Elem().Interface() // the value, not its address
		case fv.Kind() != reflect.Pointer:
			val = fv.Interface()
		}
		out[VarName(f)] = val
	}
	return out
}

// String, GoString and LogValue print the config without its secrets, so
// a log line or an error that includes it (%v, %+v, %#v, slog) cannot leak
// them.
func (c Config) String() string   { return fmt.Sprint(c.redacted()) }
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer.
func (c Config) LogValue() slog.Value { return slog.AnyValue(c.redacted()) }
