package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// TestCLIHelp: a command's help spells its flags as they are typed, says
// what ID and latest mean, and lists the exit statuses, interrupted ones
// included; nothing trails the synopsis of a command without arguments.
func TestCLIHelp(t *testing.T) {
	store := "PGBACKUPS_STORAGE_URL=" + t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"restore", "--help"}, []string{
			"usage: pgbackups restore [ID|latest] --to DATABASE_URL",
			"\n  --to DATABASE_URL\n", "\n  --confirm DBNAME\n", "\n  --jobs N\n", "\n  --clean\n",
			"latest, the default, is the newest completed backup",
			"130 interrupted (SIGINT, Ctrl-C)",
		}},
		{[]string{"help", "download"}, []string{"\n  -o FILE\n", "replacing a file already there", "given a directory, ID.dump in it"}},
		{[]string{"delete", "-h"}, []string{"\n  --confirm ID\n"}},
		{[]string{"version", "--help"}, []string{"usage: pgbackups version\n"}},
		{[]string{"help"}, []string{"'pgbackups help COMMAND'", "130 interrupted"}},
	} {
		r := run(t, []string{store}, tc.args...)
		if r.code != exitOK || r.stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
		for _, want := range tc.want {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, want, r.stdout)
			}
		}
	}
}

// TestCLIUsageErrors: a mistake on the command line exits 2 with a message
// that says what is wrong in the help's terms and, for a typo, what was
// likely meant; an explicitly empty value is a mistake, not the default.
func TestCLIUsageErrors(t *testing.T) {
	store := "PGBACKUPS_STORAGE_URL=" + t.TempDir() // empty: nothing to resolve
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer healthy.Close()
	addr := "PGBACKUPS_HTTP_ADDR=" + strings.TrimPrefix(healthy.URL, "http://")
	for _, tc := range []struct {
		args []string
		want string
		code int // exitUsage unless set
	}{
		{[]string{"restor"}, `unknown command "restor" (did you mean restore?)`, 0},
		{[]string{"config"}, "did you mean 'pgbackups help config'?", 0},
		{[]string{"restore", "--cnfirm", "x"}, "flag provided but not defined: -cnfirm (did you mean --confirm?)", 0},
		{[]string{"restore", "--to-db", "x"}, "(did you mean --to?)", 0},
		{[]string{"version", "--short"}, "(this command takes no flags)", 0},
		{[]string{"restore", "--jobs", "many"}, `--jobs "many": want a whole number`, 0},
		{[]string{"info", "--json=maybe"}, `--json "maybe": want true or false`, 0},
		// Docker reserves 2: healthcheck's usage errors are "unhealthy".
		{[]string{"healthcheck", "--timeout", "5"}, `--timeout "5": want a duration`, exitFailure},
		{[]string{"download", "-o"}, "flag -o needs a value", 0},
		// Empty values, as an unset shell variable gives them.
		{[]string{"download", "-o", ""}, "-o needs a file name", 0},
		{[]string{"verify", "--restore-to", ""}, "--restore-to is empty", 0},
		{[]string{"healthcheck", "--timeout", "0s"}, "--timeout 0s: want a positive duration", exitFailure},
		{[]string{"healthcheck", "--timeout=-1s"}, "want a positive duration", exitFailure},
		{[]string{"healthcheck", "--liv"}, "(did you mean --live?)", exitFailure},
	} {
		r := run(t, []string{store, addr}, tc.args...)
		code := exitUsage
		if tc.code != 0 {
			code = tc.code
		}
		if r.code != code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tc.args, r.code, code, tc.want, r.stdout, r.stderr)
		}
		if strings.Contains(r.stderr, "parse error") || strings.Contains(r.stderr, "context deadline exceeded") {
			t.Errorf("%v: a Go error reaches the user:\n%s", tc.args, r.stderr)
		}
	}
	// A daemon that does not answer in time is named with the timeout,
	// not as "context deadline exceeded".
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer silent.Close()
	r := run(t, []string{"PGBACKUPS_HTTP_ADDR=" + strings.TrimPrefix(silent.URL, "http://")}, "healthcheck", "--timeout", "200ms")
	if r.code != exitFailure || !strings.Contains(r.stderr, "no answer within 200ms") || strings.Contains(r.stderr, "context deadline exceeded") {
		t.Errorf("healthcheck of a silent daemon: exit %d\n%s", r.code, r.stderr)
	}
}

// cliFixture is a store holding one real backup of a small database.
type cliFixture struct {
	pg    *testenv.Postgres
	db    string
	store string
	id    string
	env   []string
}

func newCLIFixture(t *testing.T) cliFixture {
	t.Helper()
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	store := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store, "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	return cliFixture{pg: pg, db: db, store: store, id: lastLine(r.stdout), env: env}
}

// TestCLIDownloadOutput: -o takes a directory (the archive goes in it
// under its default name), and refuses, before reading anything, a path
// whose directory does not exist or that is not a regular file (renaming
// the archive over a device or a FIFO would replace it).
func TestCLIDownloadOutput(t *testing.T) {
	f := newCLIFixture(t)
	dir := t.TempDir()

	r := run(t, f.env, "download", f.id, "-o", dir)
	if _, err := os.Stat(filepath.Join(dir, f.id+".dump")); r.code != exitOK || err != nil {
		t.Errorf("download -o DIR: exit %d, %s.dump in it: %v\n%s", r.code, f.id, err, r.stderr)
	}

	missing := filepath.Join(dir, "nope", "x.dump")
	r = run(t, f.env, "download", "-o", missing)
	if r.code != exitUsage || !strings.Contains(r.stderr, "directory "+filepath.Dir(missing)+" does not exist") || strings.Contains(r.stderr, ".partial-") {
		t.Errorf("download -o into a missing directory: exit %d\n%s", r.code, r.stderr)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, f.env, "download", "-o", fifo)
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("download -o FIFO replaced the FIFO (mode %v, %v)", fi.Mode(), err)
	}
	if r.code != exitUsage || !strings.Contains(r.stderr, "is not a regular file or a directory") {
		t.Errorf("download -o FIFO: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCLIUnknownID: an id that is not stored is named with the one it
// was likely meant to be and how to list them; delete says so too, and a
// --confirm that differs from the id says that rather than asking again.
func TestCLIUnknownID(t *testing.T) {
	f := newCLIFixture(t)
	typo := f.id[:len(f.id)-1] + "0"
	if typo == f.id {
		typo = f.id[:len(f.id)-1] + "1"
	}
	for _, args := range [][]string{{"info", typo}, {"download", typo}, {"delete", typo, "--confirm", typo}} {
		r := run(t, f.env, args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "no such backup in") || !strings.Contains(r.stderr, "did you mean "+f.id+"?") ||
			!strings.Contains(r.stderr, "pgbackups list --all") || strings.HasSuffix(strings.TrimSpace(r.stderr), ": not found") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	r := run(t, f.env, "delete", f.id, "--confirm", typo)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--confirm "+typo+" does not match backup "+f.id+"; nothing was deleted") {
		t.Errorf("delete with another id confirmed: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(f.store, storage.ManifestKey(f.id))); err != nil {
		t.Fatalf("backup gone after a refused delete: %v", err)
	}
}

// TestCLIInterrupt: SIGINT (Ctrl-C) or SIGTERM during a command that
// streams a backup into pg_restore exits 128+signal, says it was
// interrupted in words (not "context canceled"), and leaves no child
// process behind.
func TestCLIInterrupt(t *testing.T) {
	f := newCLIFixture(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// A pg_restore that reports its version and then stalls, as
			// one reading a huge archive does.
			bin := t.TempDir()
			pidFile := filepath.Join(bin, "pid")
			script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = --version ]; then exec %s --version; fi\necho $$ > %s.tmp && mv %s.tmp %s\nexec sleep 600\n",
				f.pg.Tool("pg_restore"), pidFile, pidFile, pidFile)
			if err := os.WriteFile(filepath.Join(bin, "pg_restore"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			env := append(f.env[:len(f.env):len(f.env)], "PGBACKUPS_PG_BIN_DIR="+bin)
			cmd := exec.Command(binary, "verify", f.id)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			var child int
			for deadline := time.Now().Add(30 * time.Second); child == 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("pg_restore never started\n%s", stderr.String())
				}
				if b, err := os.ReadFile(pidFile); err == nil {
					child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				}
			}
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("still running 20s after %v\n%s", sig, stderr.String())
			}
			if code, want := cmd.ProcessState.ExitCode(), 128+int(sig); code != want {
				t.Errorf("exit %d after %v, want %d\n%s", code, sig, want, stderr.String())
			}
			name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
			if !strings.Contains(stderr.String(), "interrupted by "+name) || strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("stderr after %v:\n%s", sig, stderr.String())
			}
			if strings.Contains(stdout.String(), "is good") {
				t.Errorf("an interrupted verify says the backup is good:\n%s", stdout.String())
			}
			// The child is gone (reaped, or at worst a zombie of init for a moment).
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
				if err != nil || strings.Contains(string(stat), ") Z ") {
					break
				}
				if time.Now().After(deadline) {
					syscall.Kill(child, syscall.SIGKILL)
					t.Fatalf("pg_restore (pid %d) still running after pgbackups exited", child)
				}
			}
		})
	}
}
