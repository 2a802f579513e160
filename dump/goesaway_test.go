package dump_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// The database goes away while pg_dump runs: the error says what happened
// (pg_dump's own stderr reads the same for a shutdown, a restart and
// pg_terminate_backend), nothing is listed, and monitors that lose their
// connection do not fail the backup.

// pgCtl runs pg_ctl on p's data directory as the directory's owner (the
// server's user when the tests run as root).
func pgCtl(t *testing.T, p *testenv.Postgres, args ...string) {
	t.Helper()
	args = append([]string{args[0], "-D", p.DataDir, "-w", "-t", "60"}, args[1:]...)
	if args[0] == "start" || args[0] == "restart" {
		args = append(args, "-l", filepath.Join(p.Dir(), "server.log"))
	}
	cmd := exec.Command(p.Tool("pg_ctl"), args...)
	cmd.Dir = p.Dir()
	if os.Geteuid() == 0 {
		var st syscall.Stat_t
		if err := syscall.Stat(p.DataDir, &st); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: st.Uid, Gid: st.Gid}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

// captureDuring runs a slowed capture of db and calls during once pg_dump
// has written its first bytes; it returns the capture's result.
func captureDuring(t *testing.T, o dump.CaptureOptions, during func()) captured {
	t.Helper()
	started := make(chan struct{})
	if o.Throttle == nil {
		o.Throttle = slowThrottle(started)
	} else {
		onFirstRead(&o, started)
	}
	done := captureAsync(o)
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("the capture ended before pg_dump wrote anything: %v", r.err)
	}
	during()
	select {
	case r := <-done:
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("the capture is still running 2 minutes after its server went away")
	}
	panic("unreachable")
}

func TestCaptureServerGoesAway(t *testing.T) {
	pg := testenv.NewCluster(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)
	for _, tc := range []struct {
		name   string
		during func(t *testing.T)
		after  func(t *testing.T)
		want   string
	}{{
		name:   "fast shutdown",
		during: func(t *testing.T) { pgCtl(t, pg, "stop", "-m", "fast") },
		after:  func(t *testing.T) { pgCtl(t, pg, "start") },
		want:   "the server does not accept one now: it was shut down or is restarting",
	}, {
		name:   "immediate shutdown",
		during: func(t *testing.T) { pgCtl(t, pg, "stop", "-m", "immediate") },
		after:  func(t *testing.T) { pgCtl(t, pg, "start") },
		want:   "the server does not accept one now: it was shut down or is restarting",
	}, {
		name:   "restart",
		during: func(t *testing.T) { pgCtl(t, pg, "restart", "-m", "fast") },
		want:   "the server restarted during the dump",
	}, {
		name: "pg_terminate_backend",
		during: func(t *testing.T) {
			pg.Exec(t, "postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-dump-%'")
		},
		want: "before the dump began: its session was ended (pg_terminate_backend",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st := fileStore(t)
			r := captureDuring(t, options(t, pg, db, st), func() { tc.during(t) })
			if tc.after != nil {
				tc.after(t)
			}
			if r.err == nil || !strings.Contains(r.err.Error(), "pg_dump lost its connection") || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("err = %v, want pg_dump's lost connection explained: %q", r.err, tc.want)
			}
			if strings.Contains(r.err.Error(), pg.Password) {
				t.Fatalf("the error shows the password: %v", r.err)
			}
			assertNothingListed(t, st, r.m)
			assertFailedRecorded(t, st, r.m, "pg_dump lost its connection")
		})
	}
}

// TestCaptureMonitorsLoseTheirConnection: the watchdog's and the adaptive
// rate's own sessions are ended mid-dump (an operator ending "pgbackups"
// sessions, a pooler). They are helpers, not the backup: the dump goes on
// and completes, they reconnect, and the log says the backup went on.
func TestCaptureMonitorsLoseTheirConnection(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)
	st := fileStore(t)
	o := options(t, pg, db, st)
	log, logs := newLog()
	o.Logger = log
	ns := dump.NewNoStall(dump.NoStallOptions{AutoRate: true, Logger: log})
	ns.Watchdog.Interval = 50 * time.Millisecond
	ns.Adaptive.Interval, ns.Adaptive.Baseline = 200*time.Millisecond, 200*time.Millisecond
	ns.Adaptive.Floor = 2 << 20
	ns.Apply(&o)
	r := captureDuring(t, o, func() {
		for range 2 {
			waitFor(t, func() bool {
				return pg.QueryString(t, db, "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgbackups' AND datname = current_database()") == "2"
			})
			pg.Exec(t, db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbackups' AND datname = current_database()")
		}
	})
	if r.err != nil {
		t.Fatalf("the backup failed as its monitors lost their connections: %v", r.err)
	}
	for _, what := range []string{"watchdog", "adaptive rate"} {
		lines := logs.lines(what + " cannot query the database")
		if len(lines) == 0 || !strings.Contains(lines[0], "the backup goes on") || !strings.Contains(lines[0], "terminating connection due to administrator command") {
			t.Errorf("%s: the log does not say the backup went on without it, and why: %q", what, lines)
		}
		if len(logs.lines(what+" reaches the database again")) == 0 {
			t.Errorf("%s did not reconnect", what)
		}
	}
	if r.m.Status != storage.StatusCompleted {
		t.Errorf("manifest status %q, want completed", r.m.Status)
	}
}

// TestCaptureStandbyGoesAway: the standby pg_dump reads from
// (PGBACKUPS_DUMP_URL) is stopped mid-dump: the backup fails saying so. One
// promoted mid-dump keeps the dump's session and snapshot: the backup
// completes, a copy of the data as of the snapshot.
func TestCaptureStandbyGoesAway(t *testing.T) {
	primary := testenv.NewCluster(t)
	db := primary.CreateDB(t)
	primary.SeedRich(t, db, 30_000)
	for _, tc := range []struct {
		name   string
		during func(t *testing.T, standby *testenv.Postgres)
		want   string // "" for success
	}{
		{"stopped", func(t *testing.T, s *testenv.Postgres) { pgCtl(t, s, "stop", "-m", "fast") }, "the server does not accept one now"},
		{"promoted", func(t *testing.T, s *testenv.Postgres) { pgCtl(t, s, "promote") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			standby := primary.NewStandby(t)
			st := fileStore(t)
			o := options(t, primary, db, st)
			dc, err := dump.ParseConn(standby.URL(db))
			if err != nil {
				t.Fatal(err)
			}
			o.DumpConn = &dc
			r := captureDuring(t, o, func() { tc.during(t, standby) })
			if tc.want == "" {
				if r.err != nil || r.m.Source != "standby" {
					t.Fatalf("err = %v, source %q: want a completed backup from the standby", r.err, r.m.Source)
				}
				return
			}
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", r.err, tc.want)
			}
			assertNothingListed(t, st, r.m)
		})
	}
}
