package daemon

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// The database goes away under the backup lock: the tests here end the
// lock's session as the server would, and check that the backup stops, says
// why, and is retried.

// terminateLockSession ends the session holding an advisory lock in db, as
// pg_terminate_backend, a failover or an operator would.
func terminateLockSession(t *testing.T, pg *testenv.Postgres, db string) {
	t.Helper()
	got := pg.QueryString(t, db, `SELECT count(pg_terminate_backend(pid))::text FROM pg_locks
		WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if got != "1" {
		t.Fatalf("terminated %s lock sessions, want 1", got)
	}
}

// TestLockLostNoticedAtOnce: a lock session the server ends is noticed as
// it ends, not at the next periodic check (10 s by default, during which
// another replica could take the lock and back up beside this one), and
// the cause says what ended it.
func TestLockLostNoticedAtOnce(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	l := AdvisoryLock{Conn: mustConn(t, pg.URL(db)), Key: LockKey("/srv/at-once", db)}
	held, release, err := l.Hold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	terminateLockSession(t, pg, db)
	start := time.Now()
	select {
	case <-held.Done():
	case <-time.After(lockCheckInterval - time.Second):
		t.Fatalf("the lock's session was ended and Hold has not noticed in %s (lockCheckInterval %s)", time.Since(start).Round(time.Millisecond), lockCheckInterval)
	}
	cause := context.Cause(held)
	if !errors.Is(cause, ErrLockLost) || !strings.Contains(cause.Error(), "terminating connection due to administrator command") {
		t.Fatalf("cause %q, want ErrLockLost naming what the server said", cause)
	}
}

// TestLockSurvivesIdleSessionTimeout: a role or database with
// idle_session_timeout (PostgreSQL 14) ended the lock's session between two
// checks, so every backup longer than the timeout was aborted as "lock
// lost", and so was every retry.
func TestLockSurvivesIdleSessionTimeout(t *testing.T) {
	pg := testenv.PG(t)
	if pg.Major < 14 {
		t.Skip("idle_session_timeout is PostgreSQL 14 and newer")
	}
	old := lockCheckInterval
	lockCheckInterval = 2 * time.Second
	t.Cleanup(func() { lockCheckInterval = old })
	db := pg.CreateDB(t)
	pg.Exec(t, "postgres", "ALTER DATABASE "+db+" SET idle_session_timeout = '500ms'")
	conn := mustConn(t, pg.URL(db))
	l := AdvisoryLock{Conn: conn, Key: LockKey("/srv/idle", db)}
	held, release, err := l.Hold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	select {
	case <-held.Done():
		t.Fatalf("lock lost under idle_session_timeout = 500ms: %v", context.Cause(held))
	case <-time.After(2*lockCheckInterval + time.Second):
	}
	// And it is really still held.
	var heldErr *HeldError
	if _, err := (AdvisoryLock{Conn: conn, Key: l.Key}).TryLock(context.Background()); !errors.As(err, &heldErr) {
		t.Fatalf("a second TryLock: %v, want *HeldError", err)
	}
}

// TestDaemonLockLostMidBackup: the lock's session is ended while pg_dump
// runs. The backup must stop at once (not complete beside another
// replica's), leave nothing listed, say in the log and /healthz that the
// lock was lost and why, and be retried, and the retry succeeds.
func TestDaemonLockLostMidBackup(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	// Enough rows that the throttled dump below takes several seconds.
	pg.Exec(t, db, `CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g`)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn := mustConn(t, pg.URL(db))
	var attempts atomic.Int32
	started := make(chan struct{})
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture: func(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error) {
			o := dump.CaptureOptions{Conn: conn, Store: st, PgBinDir: pg.BinDir, CompressionLevel: 1, Progress: progress}
			if attempts.Add(1) == 1 {
				o.Throttle = slowReader(started) // about 5 s for this dump
			}
			return dump.Capture(ctx, o)
		},
		Lock:  AdvisoryLock{Conn: conn, Key: LockKey("/srv/lost-mid-backup", db)},
		Retry: Retry{Max: 1, Backoff: 100 * time.Millisecond},
		Now:   now,
	})
	done := make(chan struct{})
	go func() {
		ctx := context.Background()
		d.runScheduled(ctx, ctx, tick)
		close(done)
	}()
	select {
	case <-started:
	case <-done:
		t.Fatalf("the run ended before pg_dump wrote anything:\n%s", logs)
	}
	terminateLockSession(t, pg, db)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the run is still going 2 minutes later")
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d attempts, want the first to fail as the lock was lost and a retry:\n%s", n, logs)
	}
	var retrying string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "backup failed; retrying") {
			retrying = line
		}
	}
	for _, want := range []string{"the server ended the backup lock's session: it is shutting down, an administrator terminated the session, or the database was dropped", "terminating connection due to administrator command"} {
		if !strings.Contains(retrying, want) {
			t.Errorf("the failure's log line lacks %q: %q", want, retrying)
		}
	}
	_, h := getHealth(t, d.Handler())
	if h.LastFailure == nil || !strings.Contains(h.LastFailure.Error, "the server ended the backup lock's session") {
		t.Errorf("/healthz last_failure %+v, want the lost lock", h.LastFailure)
	}
	if h.LastSuccess == nil || h.Status != "ok" {
		t.Errorf("/healthz %s, last_success %+v: want the retry's success", h.Status, h.LastSuccess)
	}
	ms, err := storage.Catalog{Store: st}.Manifests(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var completed, failed int
	for _, m := range ms {
		switch m.Status {
		case storage.StatusCompleted:
			completed++
		case storage.StatusFailed:
			failed++
			if !strings.Contains(m.Error, "the server ended the backup lock's session") {
				t.Errorf("failed backup %s records %q, want the lost lock", m.ID, m.Error)
			}
		}
	}
	if completed != 1 || failed != 1 {
		t.Errorf("storage holds %d completed and %d failed backups, want the retry's and the aborted one's: %+v", completed, failed, ms)
	}
}

// slowReader reads pg_dump's output 16 KiB every 10 ms (1.6 MB/s) and
// closes started at the first bytes.
func slowReader(started chan struct{}) func(io.Reader) io.Reader {
	var once sync.Once
	return func(r io.Reader) io.Reader {
		return readFunc(func(p []byte) (int, error) {
			if len(p) > 16<<10 {
				p = p[:16<<10]
			}
			n, err := r.Read(p)
			once.Do(func() { close(started) })
			time.Sleep(10 * time.Millisecond)
			return n, err
		})
	}
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// TestLockQueriesBounded: a server that stops answering once connected
// (here: a session holding an exclusive lock on the catalog views the lock
// queries read) fails taking the lock, and asking whether it is free, after
// lockQueryTimeout, saying so, instead of holding the backup for as long as
// the server stays stuck.
func TestLockQueriesBounded(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	old := lockQueryTimeout
	lockQueryTimeout = 500 * time.Millisecond
	t.Cleanup(func() { lockQueryTimeout = old })
	ctx := context.Background()
	blocker, err := dump.Connect(ctx, mustConn(t, pg.URL(db)))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	if _, err := blocker.Exec(ctx, `BEGIN; LOCK TABLE pg_catalog.pg_settings, pg_catalog.pg_locks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	l := AdvisoryLock{Conn: mustConn(t, pg.URL(db)), Key: LockKey("/srv/stuck", db)}
	for name, f := range map[string]func() error{
		"TryLock": func() error { _, err := l.TryLock(ctx); return err },
		"Free":    func() error { _, err := l.Free(ctx); return err },
	} {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "did not answer within 500ms") {
				t.Errorf("%s against a stuck server: %v, want it to name the bound", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s against a stuck server still waiting after %s", name, time.Since(start).Round(time.Second))
		}
	}
	if _, err := blocker.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	release, err := l.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock once the server answers again: %v", err)
	}
	release()
}
