package dump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgbackups/pgbackups/internal/forkthread"
)

// Tool is one PostgreSQL client program found on this machine.
type Tool struct {
	Path    string
	Version string // as printed, e.g. "15.18"
	Major   int
}

// debianBinGlob is where Debian and Ubuntu install each major version's
// client programs side by side.
var debianBinGlob = "/usr/lib/postgresql/*/bin"

// candidateDirs returns the directories searched for client tools, in order:
// binDir, /usr/lib/postgresql/*/bin newest first, then PATH.
func candidateDirs(binDir string) []string {
	var dirs []string
	if binDir != "" {
		dirs = append(dirs, binDir)
	}
	matches, _ := filepath.Glob(debianBinGlob)
	sort.Slice(matches, func(i, j int) bool {
		return dirMajor(matches[i]) > dirMajor(matches[j])
	})
	dirs = append(dirs, matches...)
	return append(dirs, filepath.SplitList(os.Getenv("PATH"))...)
}

func dirMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// toolVersion runs "name --version" and reads the major version. Every
// candidate on the search path is run, not just the one chosen, so each gets
// the child environment: none of pgbackups' own secrets.
func toolVersion(ctx context.Context, path string) (Tool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd, stderr := command(ctx, path, []string{"--version"}, toolEnviron(os.Environ()))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := forkthread.Run(cmd); err != nil {
		return Tool{}, childError(path+" --version", err, stderr)
	}
	m := versionRE.FindStringSubmatch(out.String())
	if m == nil {
		return Tool{}, fmt.Errorf("%s --version: unexpected output %q", path, strings.TrimSpace(out.String()))
	}
	major, _ := strconv.Atoi(m[1])
	v := m[1]
	if m[2] != "" {
		v += "." + m[2]
	}
	return Tool{Path: path, Version: v, Major: major}, nil
}

// outOfResources reports whether err is the process, not the program,
// failing: out of file descriptors (EMFILE, ENFILE), processes (EAGAIN)
// or memory (ENOMEM) when starting it.
func outOfResources(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FindTool finds the first program called name, in the search order of
// candidateDirs, whose major version is at least minMajor: an older
// pg_restore cannot read a newer archive. When none fits, the error lists
// what was found and what to install.
func FindTool(ctx context.Context, name, binDir string, minMajor int) (Tool, error) {
	return findTool(ctx, name, binDir, minMajor, false)
}

// FindDumpTool finds the pg_dump (or pg_dumpall) for a server of major
// version serverMajor: the one in binDir if it fits, else the server's own
// major version, else the oldest newer one. pg_dump refuses to dump a
// newer server, and it writes archives in its own version's format: pg_dump
// 17's cannot be read by pg_restore 16, so the newest installed pg_dump
// would make every download of a 16 server's backup unreadable to the
// server's own pg_restore.
func FindDumpTool(ctx context.Context, name, binDir string, serverMajor int) (Tool, error) {
	return findTool(ctx, name, binDir, serverMajor, true)
}

// warnNewerDump warns, at capture, when FindDumpTool chose a pg_dump newer
// than the server (the server's own is not installed, or
// PGBACKUPS_PG_BIN_DIR holds a newer one): only a
// pg_restore at least as new reads its archive, and from pg_dump 17 on no
// pg_restore can restore it into the 16-or-older server it came from (see
// restoreTool).
func warnNewerDump(log *slog.Logger, pgDump Tool, serverMajor int) {
	if pgDump.Major <= serverMajor {
		return
	}
	attrs := []any{"pg_dump", pgDump.Path, "pg_dump_version", pgDump.Version, "server_major", serverMajor,
		"install", fmt.Sprintf("postgresql-client-%d", serverMajor)}
	if pgDump.Major >= firstTimeoutSetter && serverMajor < firstTimeoutSetter {
		log.Warn("pg_dump is newer than the server, so this backup cannot be restored into the server it came from: "+
			"only pg_restore of pg_dump's version or newer reads it, and pg_restore 17 and later cannot restore into PostgreSQL 16 or older; install the server's own client", attrs...)
		return
	}
	log.Warn("pg_dump is newer than the server: restoring this backup needs a pg_restore at least as new as pg_dump; install the server's own client (or point PGBACKUPS_PG_BIN_DIR at it)", attrs...)
}

func findTool(ctx context.Context, name, binDir string, minMajor int, closest bool) (Tool, error) {
	var best Tool
	seen := map[string]bool{}
	var found []string
	for _, dir := range candidateDirs(binDir) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		if st, err := os.Stat(real); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		t, err := toolVersion(ctx, p)
		if outOfResources(err) {
			// The program is there; the process could not run it. Advice
			// to install it would send the user the wrong way.
			return Tool{}, fmt.Errorf("%w: pgbackups could not start a program; raise its open-file limit (ulimit -n; LimitNOFILE= in a systemd unit) or free the host's processes and memory", err)
		}
		if err != nil {
			found = append(found, fmt.Sprintf("%s (unusable: %v)", p, err))
			continue
		}
		if t.Major >= minMajor {
			if !closest || dir == binDir || t.Major == minMajor {
				return t, nil
			}
			if best.Path == "" || t.Major < best.Major {
				best = t
			}
			continue
		}
		found = append(found, fmt.Sprintf("%s is %s", p, t.Version))
	}
	if best.Path != "" {
		return best, nil
	}
	what := "none found"
	if len(found) > 0 {
		what = "found: " + strings.Join(found, "; ")
	}
	if minMajor <= 0 { // any version will do
		return Tool{}, fmt.Errorf("no %s in PGBACKUPS_PG_BIN_DIR, %s or PATH; %s. Install the PostgreSQL client (`apt install postgresql-client`), or point PGBACKUPS_PG_BIN_DIR at its bin directory",
			name, debianBinGlob, what)
	}
	return Tool{}, fmt.Errorf("no %s of major version %d or newer (the server's) in PGBACKUPS_PG_BIN_DIR, %s or PATH; %s. Install the client for the server's version, e.g. `apt install postgresql-client-%d` from apt.postgresql.org, or point PGBACKUPS_PG_BIN_DIR at its bin directory",
		name, minMajor, debianBinGlob, what, minMajor)
}
