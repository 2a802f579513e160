package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// binary is the pgbackups binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgbackups-bin-*")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pgbackups")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	testenv.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the built binary with exactly env (plus PATH and a private HOME),
// never the test process's own environment.
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runIn(t, "", env, args...)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestConfigErrorsAllReportedAtOnce(t *testing.T) {
	r := run(t, []string{
		"PGBACKUPS_NICE=abc",
		"PGBACKUPS_S3_PART_SIZE=1MiB",
		"PGBACKUPS_KEEP_DAYLY=3",
		"PGBACKUPS_LOG_FORMAT=xml",
		"PGBACKUPS_MAX_RATE=fast",
		"PGBACKUPS_DATABASE_URL=postgres://app:hunter2@db:notaport/app",
		"PGBACKUPS_DUMP_URL=host=replica password=hunter2 port=abc",
		"PGBACKUPS_ORPHAN_GRACE=10m",
		"PGBACKUPS_RETRY_BACKOFF=0",
		"PGBACKUPS_STORAGE_URL=s3://Not_A_Bucket/prefix",
	}, "capture")
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d\n%s", r.code, exitUsage, r.stderr)
	}
	for _, want := range []string{
		"PGBACKUPS_NICE", "PGBACKUPS_S3_PART_SIZE", "PGBACKUPS_KEEP_DAYLY", "did you mean PGBACKUPS_KEEP_DAILY", "PGBACKUPS_LOG_FORMAT", "PGBACKUPS_MAX_RATE",
		"PGBACKUPS_DATABASE_URL: does not parse", "PGBACKUPS_DUMP_URL: does not parse", "PGBACKUPS_ORPHAN_GRACE", "PGBACKUPS_RETRY_BACKOFF",
		`bucket "Not_A_Bucket"`, "Nothing was run",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "hunter2") {
		t.Errorf("stderr repeats a database URL's password:\n%s", r.stderr)
	}

	// Each of these alone used to surface only later, or as exit 1.
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"PGBACKUPS_DATABASE_URL=postgres://app:hunter2@db:notaport/app"}, "PGBACKUPS_DATABASE_URL: does not parse"},
		{[]string{"PGBACKUPS_DUMP_URL=postgres://app:hunter2@db:notaport/app"}, "PGBACKUPS_DUMP_URL: does not parse"},
		{[]string{"PGBACKUPS_STORAGE_URL=s3://Not_A_Bucket"}, `bucket "Not_A_Bucket"`},
		{[]string{"PGBACKUPS_STORAGE_URL=file:backups"}, "use file:///absolute/path"},
		// No region anywhere: HOME is private, so no ~/.aws/config either.
		{[]string{"PGBACKUPS_STORAGE_URL=s3://good-bucket/prefix"}, "AWS_REGION: S3 needs a region"},
	} {
		env := append([]string{"PGBACKUPS_STORAGE_URL=" + t.TempDir()}, tc.env...)
		r := run(t, env, "capture")
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "Nothing was run") || strings.Contains(r.stderr, "hunter2") {
			t.Errorf("%v: exit %d, want %d naming %q:\n%s", tc.env, r.code, exitUsage, tc.want, r.stderr)
		}
	}
}

func TestSecretFileVariables(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "db-url")
	os.WriteFile(secret, []byte("postgres://app:from-file-secret@127.0.0.1:1/filedb?connect_timeout=2\n"), 0o600)
	r := run(t, []string{"PGBACKUPS_DATABASE_URL_FILE=" + secret, "PGBACKUPS_STORAGE_URL=" + dir + "/store"}, "capture")
	// The URL from the file is used: the error names its database, not the secret.
	if r.code != exitFailure || !strings.Contains(r.stderr, "filedb") || strings.Contains(r.stderr, "from-file-secret") {
		t.Fatalf("exit %d, want 1 naming filedb without the password:\n%s", r.code, r.stderr)
	}
	r = run(t, []string{"PGBACKUPS_DATABASE_URL_FILE=" + secret, "PGBACKUPS_DATABASE_URL=postgres://x@y/z", "PGBACKUPS_STORAGE_URL=" + dir}, "capture")
	if r.code != exitUsage || !strings.Contains(r.stderr, "set together with PGBACKUPS_DATABASE_URL") {
		t.Fatalf("exit %d, want 2 for both set:\n%s", r.code, r.stderr)
	}
	r = run(t, []string{"PGBACKUPS_DATABASE_URL_FILE=" + dir + "/missing", "PGBACKUPS_STORAGE_URL=" + dir}, "capture")
	if r.code != exitUsage || !strings.Contains(r.stderr, "PGBACKUPS_DATABASE_URL_FILE") {
		t.Fatalf("exit %d, want 2 for a missing secret file:\n%s", r.code, r.stderr)
	}
}

func TestUsage(t *testing.T) {
	store := "PGBACKUPS_STORAGE_URL=" + t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"capture", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"list", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"capture", "--help"}, exitOK, "usage: pgbackups capture"},
		{[]string{"help"}, exitOK, "Commands:"},
		{[]string{"help", "config"}, exitOK, "PGBACKUPS_DATABASE_URL"},
		{[]string{"help", "list"}, exitOK, "usage: pgbackups list"},
		{[]string{"help", "--help"}, exitOK, "Commands:"}, // once a stack overflow
		{[]string{"-h", "-h"}, exitOK, "Commands:"},
		{[]string{"version"}, exitOK, ", go1."},
		{[]string{"info", "2026-11-28"}, exitUsage, `"2026-11-28" is not a backup id`},
		{[]string{"download", "../../etc/passwd"}, exitUsage, "is not a backup id"},
	} {
		r := run(t, []string{store}, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("%v: exit %d, output lacks %q or code != %d:\n%s%s", tc.args, r.code, tc.want, tc.code, r.stdout, r.stderr)
		}
	}
}

// TestReadCommandsNeedTheStore: a mistyped local storage path is an
// error for the commands that read backups (not an empty store, and not
// created); capture creates it.
func TestReadCommandsNeedTheStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	env := []string{"PGBACKUPS_STORAGE_URL=" + missing}
	for _, args := range [][]string{{"list"}, {"info", "latest"}, {"prune", "--dry-run"}, {"verify", "latest"}} {
		r := run(t, env, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, missing+" does not exist") || strings.Contains(r.stdout+r.stderr, "no backups stored yet") {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("%v created %s", args, missing)
		}
	}
}

// TestUnreadableManifest: a newer backup whose manifest cannot be read is
// listed (not silently left out), and "latest" refuses to pass over it to
// an older backup; the older one is still there by its id.
func TestUnreadableManifest(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir}
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	good, bad := storage.NewID(now.Add(-2*time.Hour)), storage.NewID(now.Add(-time.Hour))
	if _, err := st.Put(ctx, storage.DataKey(good), strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	if err := (storage.Catalog{Store: st}).WriteManifest(ctx, storage.Manifest{ID: good, Status: storage.StatusCompleted,
		Database: "app", StartedAt: now.Add(-2 * time.Hour), FinishedAt: now.Add(-2*time.Hour + time.Minute), DataKey: storage.DataKey(good)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, storage.ManifestKey(bad), strings.NewReader(`{"id": "`+bad+`", "status": "compl`)); err != nil {
		t.Fatal(err)
	}

	r := run(t, env, "list")
	if r.code != exitOK || !strings.Contains(r.stdout, bad+"  unreadable") || !strings.Contains(r.stdout, good+"  completed") ||
		!strings.Contains(r.stderr, "warning: backup "+bad+": manifest is corrupt") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := listJSON(t, env); len(got) != 1 || got[0].ID != good {
		t.Errorf("list --json = %+v, want just %s", got, good)
	}
	r = run(t, env, "info", "latest")
	if r.code == exitOK || !strings.Contains(r.stderr, "latest: backup "+bad+": manifest is corrupt") || !strings.Contains(r.stderr, "name a backup id") {
		t.Errorf("info latest: exit %d, want an error naming %s\n%s%s", r.code, bad, r.stdout, r.stderr)
	}
	if r := run(t, env, "info", good); r.code != exitOK || !strings.Contains(r.stdout, good) {
		t.Errorf("info %s: exit %d\n%s%s", good, r.code, r.stdout, r.stderr)
	}
}

// spyBinDir holds a pg_dump that records how it was called, then runs the
// real one: the password must reach it through a 0600 passfile, never argv.
func spyBinDir(t *testing.T, pg *testenv.Postgres) (dir string) {
	dir = t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "$@" > %[1]s/argv
env > %[1]s/env
if [ -n "$PGPASSFILE" ]; then stat -c %%a "$PGPASSFILE" > %[1]s/passfile-mode; fi
if [ -n "$PGSERVICEFILE" ]; then stat -c %%a "$PGSERVICEFILE" > %[1]s/servicefile-mode; cp "$PGSERVICEFILE" %[1]s/servicefile; echo "$PGSERVICEFILE" > %[1]s/servicefile-path; fi
exec %[2]s "$@"
`, dir, pg.Tool("pg_dump"))
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func listJSON(t *testing.T, env []string, extra ...string) []storage.Manifest {
	t.Helper()
	r := run(t, env, append([]string{"list", "--json"}, extra...)...)
	if r.code != 0 {
		t.Fatalf("list --json: exit %d\n%s", r.code, r.stderr)
	}
	var ms []storage.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
		t.Fatalf("list --json output: %v\n%s", err, r.stdout)
	}
	return ms
}

func TestCaptureToDefaultLocalDirectory(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	spy := spyBinDir(t, pg)
	data := t.TempDir()
	env := []string{
		"PGBACKUPS_DATABASE_URL=" + pg.URL(db),
		"PGBACKUPS_PG_BIN_DIR=" + spy,
		"XDG_DATA_HOME=" + data, // STORAGE_URL unset: the user's data directory
	}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	id := lastLine(r.stdout)
	if !storage.ValidID(id) {
		t.Fatalf("last stdout line %q is not a backup id", id)
	}
	if _, err := os.Stat(filepath.Join(data, "pgbackups", storage.DataKey(id))); err != nil {
		t.Fatalf("backup not in the default directory: %v", err)
	}
	ms := listJSON(t, env)
	if len(ms) != 1 || ms[0].ID != id || ms[0].Status != storage.StatusCompleted || ms[0].Database != db {
		t.Fatalf("list --json = %+v, want the one backup %s", ms, id)
	}

	argv, _ := os.ReadFile(filepath.Join(spy, "argv"))
	childEnv, _ := os.ReadFile(filepath.Join(spy, "env"))
	mode, _ := os.ReadFile(filepath.Join(spy, "passfile-mode"))
	for what, s := range map[string]string{"pg_dump argv": string(argv), "pg_dump env": string(childEnv), "stderr": r.stderr, "stdout": r.stdout} {
		if strings.Contains(s, pg.Password) {
			t.Errorf("the password appears in %s:\n%s", what, s)
		}
	}
	if !strings.Contains(string(argv), "--format=custom") || !strings.Contains(string(argv), "--lock-wait-timeout=30000") {
		t.Errorf("pg_dump argv lacks the expected flags:\n%s", argv)
	}
	if strings.TrimSpace(string(mode)) != "600" {
		t.Errorf("passfile mode %q, want 600", mode)
	}
}

// TestCaptureSSLPasswordNotInArgv: sslpassword (the passphrase of an
// encrypted client key) has no libpq environment variable, so it reaches
// pg_dump in a 0600 service file, never in argv. The real pg_dump reads
// that file (libpq rejects a malformed one), and it is gone afterwards.
func TestCaptureSSLPasswordNotInArgv(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT 1 AS x")
	spy := spyBinDir(t, pg)
	const passphrase = "key-passphrase-7f3a"
	u := pg.URL(db)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	env := []string{
		"PGBACKUPS_DATABASE_URL=" + u + sep + "sslpassword=" + passphrase,
		"PGBACKUPS_PG_BIN_DIR=" + spy,
		"PGBACKUPS_STORAGE_URL=" + t.TempDir(),
	}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	argv, _ := os.ReadFile(filepath.Join(spy, "argv"))
	for what, s := range map[string]string{"pg_dump argv": string(argv), "stderr": r.stderr, "stdout": r.stdout} {
		if strings.Contains(s, passphrase) {
			t.Errorf("the sslpassword appears in %s:\n%s", what, s)
		}
	}
	service, _ := os.ReadFile(filepath.Join(spy, "servicefile"))
	mode, _ := os.ReadFile(filepath.Join(spy, "servicefile-mode"))
	if !strings.Contains(string(service), "\nsslpassword="+passphrase+"\n") || strings.TrimSpace(string(mode)) != "600" {
		t.Errorf("service file (mode %q):\n%s", mode, service)
	}
	path, _ := os.ReadFile(filepath.Join(spy, "servicefile-path"))
	if p := strings.TrimSpace(string(path)); p == "" {
		t.Error("pg_dump got no PGSERVICEFILE")
	} else if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("service file %s left behind after the capture (stat: %v)", p, err)
	}
}

func TestCaptureToS3(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	srv := testenv.S3(t)
	env := append(srv.Env(), "DATABASE_URL="+pg.URL(db)) // the fallback variable
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	id := lastLine(r.stdout)
	for _, s := range []string{r.stderr, r.stdout} {
		if strings.Contains(s, srv.SecretKey) || strings.Contains(s, pg.Password) {
			t.Fatalf("a secret appears in the output:\n%s", s)
		}
	}
	ms := listJSON(t, env)
	if len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("list --json = %+v, want %s", ms, id)
	}
	if ms[0].DataKey != storage.DataKey(id) || ms[0].SHA256 == "" || ms[0].StoredBytes == 0 {
		t.Fatalf("manifest incomplete: %+v", ms[0])
	}
}

func TestCaptureWithLibpqVariables(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	env := []string{
		"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER=" + pg.User,
		"PGPASSWORD=" + pg.Password, "PGDATABASE=" + db, "PGSSLMODE=disable",
		"PGBACKUPS_STORAGE_URL=file://" + t.TempDir(),
	}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	if ms := listJSON(t, env); len(ms) != 1 || ms[0].Database != db {
		t.Fatalf("list = %+v", ms)
	}
	// With nothing naming a reachable database, the error says what was
	// tried instead.
	env[1] = "PGPORT=1"
	if r := run(t, env, "capture"); r.code != exitFailure || !strings.Contains(r.stderr, "PGBACKUPS_DATABASE_URL and DATABASE_URL are unset") {
		t.Errorf("capture with libpq variables pointing nowhere: exit %d\n%s", r.code, r.stderr)
	}
	// A libpq variable that does not parse is named as what it is, not as
	// the PGBACKUPS_DATABASE_URL the user never set.
	env[1] = "PGPORT=abc"
	if r := run(t, env, "capture"); r.code != exitUsage || !strings.Contains(r.stderr, "libpq's PG* variables (PGBACKUPS_DATABASE_URL and DATABASE_URL are unset): the connection settings do not parse: invalid port") {
		t.Errorf("capture with PGPORT=abc: exit %d\n%s", r.code, r.stderr)
	}
}

func TestCaptureFailsCleanly(t *testing.T) {
	store := t.TempDir()
	env := []string{
		"PGBACKUPS_DATABASE_URL=postgres://app:sup3r-secret@127.0.0.1:1/appdb?connect_timeout=2",
		"PGBACKUPS_STORAGE_URL=" + store,
	}
	r := run(t, env, "capture")
	if r.code != exitFailure {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "sup3r-secret") || !strings.Contains(r.stderr, `"appdb"`) || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Fatalf("error must name host and database, never the password:\n%s", r.stderr)
	}
	if r.stdout != "" {
		t.Fatalf("a failed capture printed an id: %q", r.stdout)
	}
	if ms := listJSON(t, env); len(ms) != 0 {
		t.Fatalf("list shows %+v after a failed capture", ms)
	}
}

// Only a lock another pgbackups holds means "a second backup": failing to
// reach the database to take the lock is a plain failure.
func TestCaptureLockConnectErrorIsNotASecondBackup(t *testing.T) {
	env := []string{
		"PGBACKUPS_DATABASE_URL=postgres://app:sup3r-secret@127.0.0.1:1/appdb?connect_timeout=2",
		"PGBACKUPS_STORAGE_URL=" + t.TempDir(),
	}
	r := run(t, env, "capture")
	if r.code != exitFailure || strings.Contains(r.stderr, "second backup") || !strings.Contains(r.stderr, "connect to database \"appdb\"") || !strings.Contains(r.stderr, "(taking the backup lock)") {
		t.Fatalf("exit %d, want 1 with a backup lock error that is not about a second backup:\n%s", r.code, r.stderr)
	}
}

func TestCaptureRefusesWhileAnotherBackupRuns(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	store := t.TempDir()
	holder := holdBackupLock(t, pg, db, store)
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store}
	r := run(t, env, "capture")
	if r.code != exitFailure || !strings.Contains(r.stderr, "not starting a second backup") || !strings.Contains(r.stderr, "another pgbackups holds the lock") {
		t.Fatalf("exit %d, want 1 refusing a concurrent backup:\n%s", r.code, r.stderr)
	}
	holder.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
	if r := run(t, env, "capture"); r.code != 0 {
		t.Fatalf("capture after the lock was released: exit %d\n%s", r.code, r.stderr)
	}
}

func TestPruneWaitsForRunningBackup(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	store := t.TempDir()
	holdBackupLock(t, pg, db, store)
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store}
	if r := run(t, env, "prune"); r.code != exitFailure || !strings.Contains(r.stderr, "a backup is running") {
		t.Fatalf("prune during a backup: exit %d\n%s", r.code, r.stderr)
	}
	// Without the database, prune goes on but leaves objects without a manifest.
	unreachable := []string{"PGBACKUPS_DATABASE_URL=postgres://x:y@127.0.0.1:1/none?connect_timeout=2", "PGBACKUPS_STORAGE_URL=" + store}
	if r := run(t, unreachable, "prune"); r.code != 0 || !strings.Contains(r.stderr, "keeping objects without a manifest") {
		t.Fatalf("prune without the database: exit %d\n%s", r.code, r.stderr)
	}
}

// holdBackupLock holds what a daemon backing up db into store holds, until
// the test ends.
func holdBackupLock(t *testing.T, pg *testenv.Postgres, db, store string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(ctx) })
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", daemon.LockKey(store, db)); err != nil {
		t.Fatal(err)
	}
	return holder
}

// TestListMentionsFailedBackups: list shows completed backups only, but
// never hides without a word that the latest attempts failed (retention
// removes failed backups older than the newest good one, so the ones left
// are the recent failures).
func TestListMentionsFailedBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat := storage.Catalog{Store: st}
	at := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	failed := func(at time.Time) string {
		m := storage.Manifest{ID: storage.NewID(at), Status: storage.StatusFailed, Database: "app", StartedAt: at, FinishedAt: at.Add(time.Minute), Error: "pg_dump: exit status 1"}
		if err := cat.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir}

	failed(at)
	newest := failed(at.Add(24 * time.Hour))
	r := run(t, env, "list")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no completed backups\n") ||
		!strings.Contains(r.stderr, "note: 2 failed backups not shown (newest "+newest+"); `pgbackups list --all` shows them") ||
		strings.Contains(r.stderr, "no backups stored yet") {
		t.Errorf("list of only failed backups: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	good := storage.Manifest{ID: storage.NewID(at.Add(-24 * time.Hour)), Status: storage.StatusCompleted, Database: "app",
		StartedAt: at.Add(-24 * time.Hour), FinishedAt: at.Add(-24*time.Hour + time.Minute), DataKey: storage.DataKey(storage.NewID(at.Add(-24 * time.Hour)))}
	if err := cat.WriteManifest(ctx, good); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "list")
	if r.code != 0 || !strings.Contains(r.stdout, good.ID) || strings.Contains(r.stdout, newest) ||
		!strings.Contains(r.stderr, "note: 2 failed backups not shown (newest "+newest+")") {
		t.Errorf("list: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "list", "--all"); r.code != 0 || !strings.Contains(r.stdout, newest) || strings.Contains(r.stderr, "not shown") {
		t.Errorf("list --all: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// TestHealthcheckLive: `healthcheck --live` probes /livez, so whatever
// replaces an unhealthy container (Docker Swarm) does not restart a daemon
// whose /healthz is 503 because its last success is stale, which a restart
// cannot fix.
func TestHealthcheckLive(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"status":"overdue","reason":"no backup since the run due at 02:00"}`)
		case "/livez":
			fmt.Fprint(w, `{"status":"alive"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	env := []string{"PGBACKUPS_HTTP_ADDR=" + strings.TrimPrefix(srv.URL, "http://")}
	if r := run(t, env, "healthcheck"); r.code != exitFailure || !strings.Contains(r.stdout, "overdue") ||
		!strings.Contains(r.stderr, "503 Service Unavailable: overdue: no backup since the run due at 02:00") {
		t.Errorf("healthcheck: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "healthcheck", "--live"); r.code != exitOK || !strings.Contains(r.stdout, "alive") {
		t.Errorf("healthcheck --live: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, []string{"PGBACKUPS_HTTP_ADDR=off"}, "healthcheck", "--live"); r.code != exitFailure || !strings.Contains(r.stderr, "no /livez to probe") {
		t.Errorf("healthcheck --live with PGBACKUPS_HTTP_ADDR=off: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

// TestHealthcheckLongBody: a failing daemon's /healthz carries pg_dump's
// error, kilobytes of it. healthcheck prints only its start (Docker keeps
// 4 KiB of a check's output) and puts the verdict in its error line.
func TestHealthcheckLongBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"status":"failing","reason":"the last backup failed","last_failure":{"error":%q}}`, strings.Repeat("pg_dump: error: ", 500))
	}))
	defer srv.Close()
	r := run(t, []string{"PGBACKUPS_HTTP_ADDR=" + strings.TrimPrefix(srv.URL, "http://")}, "healthcheck")
	if r.code != exitFailure || len(r.stdout) > 1100 || !strings.Contains(r.stderr, "503 Service Unavailable: failing: the last backup failed") {
		t.Errorf("healthcheck: exit %d, %d bytes out\nstderr: %s", r.code, len(r.stdout), r.stderr)
	}
}
