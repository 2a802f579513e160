package dump_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// These tests renice PostgreSQL's backends: lowering one takes running as
// the server's user or as root (testenv runs the server as the test's user,
// or as postgres under root, as in CI); raising one back takes root.

// dumpBackend is the pid of the first dump's backend in pg_stat_activity.
func dumpBackend(t *testing.T, pg *testenv.Postgres, db string) int {
	t.Helper()
	pid, err := strconv.Atoi(pg.QueryString(t, db, "SELECT pid::text FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-dump-%'"))
	if err != nil {
		t.Fatalf("the dump's backend: %v", err)
	}
	return pid
}

// TestCaptureLowersBackend: with BackendNice, the server process running
// pg_dump's COPY runs at that niceness while the dump runs, and the backup
// is whole.
func TestCaptureLowersBackend(t *testing.T) {
	lowerableTo(t, 7) // the test cluster runs at this process's niceness
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 20_000)
	st := fileStore(t)
	o := options(t, pg, db, st)
	log, logs := newLog()
	dump.NewNoStall(dump.NoStallOptions{BackendNice: 7, MaxRate: 512 << 10, Logger: log}).Apply(&o)
	started := make(chan struct{})
	onFirstRead(&o, started)

	done := make(chan error, 1)
	go func() {
		_, err := dump.Capture(context.Background(), o)
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the capture ended before pg_dump's output was read: %v", err)
	}
	pid := dumpBackend(t, pg, db)
	if !eventually(5*time.Second, func() bool { return niceOf(t, pid) == 7 }) {
		t.Errorf("the dump's backend (pid %d) runs at nice %d, want 7", pid, niceOf(t, pid))
	}
	// A ~4 MB dump at 512 KiB/s: about eight seconds.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("capture still running after 2 minutes")
	}
	if l := logs.lines("lowered the dump's server backend"); len(l) != 1 || !strings.Contains(l[0], `"nice":7`) {
		t.Errorf("want one log line saying the backend was lowered to 7, got %q\n%s", l, logs)
	}
}

// TestBackendNiceRestoresSurvivor: a backend still serving its client after
// the dump (a session-pooling proxy keeps server connections) gets its
// niceness back. A session under the dump's application_name stands in,
// as a role without pg_read_all_stats: the monitor sees its own role's
// sessions, so it must not warn that it lacks the grant.
func TestBackendNiceRestoresSurvivor(t *testing.T) {
	lowerableTo(t, 9) // the test cluster runs at this process's niceness
	if os.Geteuid() != 0 {
		t.Skip("restoring a backend's priority (raising it) takes root or CAP_SYS_NICE")
	}
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `DO $$ BEGIN
  IF to_regrole('dumper_plain') IS NULL THEN CREATE ROLE dumper_plain LOGIN PASSWORD 'dumper-pw-3'; END IF;
END $$`)
	url := pg.URLAs("dumper_plain", "dumper-pw-3", db)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = dump.AppName("survivor")
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	pid := int(c.PgConn().PID())
	before := niceOf(t, pid)
	conn, err := dump.ParseConn(url)
	if err != nil {
		t.Fatal(err)
	}

	log, logs := newLog()
	b := &dump.BackendNice{Nice: 9, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() {
		watched <- b.Watch(ctx, dump.Running{ID: "survivor", AppName: dump.AppName("survivor"), Conn: conn})
	}()
	if !eventually(5*time.Second, func() bool { return niceOf(t, pid) == 9 }) {
		t.Fatalf("the backend (pid %d) runs at nice %d, want 9", pid, niceOf(t, pid))
	}
	cancel()
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if got := niceOf(t, pid); got != before {
		t.Errorf("the surviving backend runs at nice %d after the dump, want %d back", got, before)
	}
	if l := logs.lines("outlived the dump"); len(l) != 1 || !strings.Contains(l[0], "restored") {
		t.Errorf("want one line saying the backend outlived the dump and was restored, got %q\n%s", l, logs)
	}
	if l := logs.lines("sees only sessions"); len(l) != 0 {
		t.Errorf("the monitor asked for pg_read_all_stats it does not need: %q", l)
	}
	// The session still works.
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}
