package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureNoStallWiring runs the binary with issue 5's variables set:
// the dump comes from the standby, at a limited rate, with the watchdog and
// the size guard armed, its server backend lowered (on the standby), and no
// secret in the output.
func TestCaptureNoStallWiring(t *testing.T) {
	// The cluster runs at this process's niceness (more than 0 where CI
	// runs jobs under nice): the backend is lowered past it.
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	backendNice := 20 - raw + 5
	if backendNice > 19 {
		t.Skipf("the test runs at nice %d: its cluster's backends cannot be lowered further", 20-raw)
	}
	primary := testenv.NewCluster(t)
	db := primary.CreateDB(t)
	// A ~3 MB dump at 2 MiB/s: pg_dump stays connected for about a second
	// once the 1 MiB pipe is full. A dump that fits in the pipe (2000 rows,
	// 0.6 MB) left pg_dump's session on the standby for a few dozen
	// milliseconds, so the backend monitor missed it about one run in three.
	primary.SeedRich(t, db, 10_000)
	standby := primary.NewStandby(t)
	env := []string{
		"PGBACKUPS_DATABASE_URL=" + primary.URL(db),
		"PGBACKUPS_DUMP_URL=" + standby.URL(db),
		"PGBACKUPS_STORAGE_URL=" + t.TempDir(),
		"PGBACKUPS_MAX_RATE=2MiB",
		"PGBACKUPS_ON_BLOCKING=abort",
		"PGBACKUPS_LOGICAL_LIMIT=1MiB",
		"PGBACKUPS_NICE=5",
		"PGBACKUPS_BACKEND_NICE=" + strconv.Itoa(backendNice),
		"PGBACKUPS_LOG_LEVEL=debug",
	}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, primary.Password) {
		t.Fatalf("the password appears in the output:\n%s", r.stderr)
	}
	for _, want := range []string{"dumping from a standby", "over PGBACKUPS_LOGICAL_LIMIT", "lowered the dump's server backend"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("log lacks %q:\n%s", want, r.stderr)
		}
	}
	ms := listJSON(t, env)
	if len(ms) != 1 || ms[0].Source != "standby" || len(ms[0].Warnings) != 1 || !strings.Contains(ms[0].Warnings[0], "PGBACKUPS_LOGICAL_LIMIT") {
		t.Fatalf("list --json = %+v, want one backup from the standby with the size warning", ms)
	}

	t.Run("bad dump URL", func(t *testing.T) {
		env := append(env[:0:0], env...)
		env[1] = "PGBACKUPS_DUMP_URL=postgres://app:dump-s3cret@127.0.0.1:notaport/" + db
		r := run(t, env, "capture")
		if r.code != exitUsage || !strings.Contains(r.stderr, "PGBACKUPS_DUMP_URL") || strings.Contains(r.stderr, "dump-s3cret") {
			t.Fatalf("exit %d, want 2 naming PGBACKUPS_DUMP_URL without its password:\n%s", r.code, r.stderr)
		}
	})
}

// TestCaptureDefaultsToAdaptiveRate: with no PGBACKUPS_MAX_RATE, a capture
// runs the adaptive rate (the default is auto), starting at its floor.
func TestCaptureDefaultsToAdaptiveRate(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	env := []string{
		"PGBACKUPS_DATABASE_URL=" + pg.URL(db),
		"PGBACKUPS_STORAGE_URL=" + t.TempDir(),
		"PGBACKUPS_LOG_LEVEL=debug",
	}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "measuring the application's baseline load") {
		t.Errorf("the default capture did not run the adaptive rate:\n%s", r.stderr)
	}
	r = run(t, append(env, "PGBACKUPS_MAX_RATE=off"), "capture")
	if r.code != 0 || strings.Contains(r.stderr, "baseline load") {
		t.Errorf("MAX_RATE=off: exit %d, adaptive rate still ran:\n%s", r.code, r.stderr)
	}
}
