package dump_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureFromStandby dumps a streaming replica (PGBACKUPS_DUMP_URL)
// while pre-flight uses the primary: the dump's backend must be on the
// standby and nowhere on the primary, and the backup must restore to the
// primary's data.
func TestCaptureFromStandby(t *testing.T) {
	primary := testenv.NewCluster(t)
	db := primary.CreateDB(t)
	primary.SeedRich(t, db, 20_000)
	want := primary.TableChecksums(t, db)
	standby := primary.NewStandby(t)

	st := fileStore(t)
	o := options(t, primary, db, st)
	dc, err := dump.ParseConn(standby.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	o.DumpConn = &dc
	log, logs := newLog()
	o.Logger = log

	// A monitor finds the dump's backend by its application_name on both
	// servers; pg_dump's output is held back until it has looked.
	looked := make(chan struct{})
	var onStandby, onPrimary int
	var sawConn string
	o.Monitors = append(o.Monitors, func(ctx context.Context, r dump.Running) error {
		defer close(looked)
		sawConn = r.Conn.String()
		count := func(pg *testenv.Postgres) int {
			c, err := pgx.Connect(ctx, pg.URL("postgres"))
			if err != nil {
				t.Error(err)
				return -1
			}
			defer c.Close(ctx)
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", r.AppName).Scan(&n); err != nil {
				t.Error(err)
			}
			return n
		}
		for deadline := time.Now().Add(10 * time.Second); onStandby == 0 && time.Now().Before(deadline); {
			onStandby = count(standby)
			time.Sleep(20 * time.Millisecond)
		}
		onPrimary = count(primary)
		return nil
	})
	o.Throttle = func(r io.Reader) io.Reader {
		return readerFunc(func(p []byte) (int, error) {
			<-looked
			return r.Read(p)
		})
	}

	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if onStandby != 1 || onPrimary != 0 {
		t.Fatalf("dump backend seen %d times on the standby and %d on the primary; want 1 and 0", onStandby, onPrimary)
	}
	if sawConn != dc.String() {
		t.Errorf("monitors were pointed at %s, want the standby %s", sawConn, dc)
	}
	if m.Source != "standby" || m.Host != dc.String() || m.ServerVersion == "" {
		t.Errorf("manifest source %q, host %q, server %q; want standby, %s and its version", m.Source, m.Host, m.ServerVersion, dc)
	}
	if len(logs.lines("dumping from a standby")) != 1 || len(logs.lines("replay_lag_bytes")) != 1 {
		t.Errorf("standby and its lag not logged:\n%s", logs)
	}
	target := primary.CreateDB(t)
	restoreInto(t, primary, st, m, target)
	if d := testenv.DiffChecksums(want, primary.TableChecksums(t, target)); d != "" {
		t.Fatalf("restored data differs:\n%s", d)
	}

	t.Run("not a standby", func(t *testing.T) {
		o := options(t, primary, db, fileStore(t))
		pc, err := dump.ParseConn(primary.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		o.DumpConn = &pc
		_, err = dump.Capture(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "not in recovery") || strings.Contains(err.Error(), primary.Password) {
			t.Fatalf("err = %v, want a refusal to dump a primary as a standby", err)
		}
	})
	t.Run("another database", func(t *testing.T) {
		o := options(t, primary, db, fileStore(t))
		oc, err := dump.ParseConn(standby.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		o.DumpConn = &oc
		if _, err = dump.Capture(context.Background(), o); err == nil || !strings.Contains(err.Error(), "must be the same database") {
			t.Fatalf("err = %v, want a database mismatch", err)
		}
	})
}

// TestCaptureStandbyRecoveryConflict: DDL on the primary needs a lock the
// dump holds on the standby; with max_standby_streaming_delay short, the
// standby cancels the dump. The error must say so and give the advice.
func TestCaptureStandbyRecoveryConflict(t *testing.T) {
	primary := testenv.NewCluster(t)
	db := primary.CreateDB(t)
	primary.SeedRich(t, db, 20_000)
	standby := primary.NewStandby(t, "max_standby_streaming_delay = 100ms", "hot_standby_feedback = off")

	st := fileStore(t)
	o := options(t, primary, db, st)
	dc, err := dump.ParseConn(standby.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	o.DumpConn = &dc
	ns := dump.NewNoStall(dump.NoStallOptions{MaxRate: 256 << 10})
	ns.Apply(&o)
	started := make(chan struct{})
	onFirstRead(&o, started)
	// The capture runs in the background and the test goroutine does the
	// DDL: Exec and WaitReplay fail the test through t, which only the
	// test's own goroutine may do (from a helper goroutine, a failure
	// after the test returned would panic the whole test binary).
	done := captureAsync(o)
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("the capture ended before pg_dump wrote anything: %v", r.err)
	}
	primary.Exec(t, db, "ALTER TABLE app.users ADD COLUMN nickname text")
	// Replay gets past the ALTER once the standby has ended the dump's
	// session; then let pg_dump read what the server had buffered.
	primary.WaitReplay(t, standby)
	ns.Limiter.SetLimit(0)
	r := <-done
	m, err := r.m, r.err
	if err == nil {
		serverLog, _ := os.ReadFile(filepath.Join(standby.Dir(), "server.log"))
		t.Fatalf("the dump survived a recovery conflict: %+v\nstandby's log:\n%s", m, serverLog)
	}
	msg := err.Error()
	if !strings.Contains(msg, "recovery conflict") && !strings.Contains(msg, "conflict with recovery") {
		t.Errorf("error does not name the recovery conflict: %v", err)
	}
	for _, want := range []string{"max_standby_streaming_delay", "hot_standby_feedback"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if t.Failed() {
		serverLog, _ := os.ReadFile(filepath.Join(standby.Dir(), "server.log"))
		t.Logf("standby's log:\n%s", serverLog)
	}
	assertNothingListed(t, st, m)
}
