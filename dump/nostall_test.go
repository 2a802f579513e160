package dump_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// logBuffer collects a logger's JSON lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines containing s.
func (b *logBuffer) lines(s string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// onFirstRead wraps o's Throttle so started is closed when pg_dump's first
// bytes are read (after it has taken its table locks).
func onFirstRead(o *dump.CaptureOptions, started chan struct{}) {
	prev := o.Throttle
	var once sync.Once
	o.Throttle = func(r io.Reader) io.Reader {
		if prev != nil {
			r = prev(r)
		}
		return readerFunc(func(p []byte) (int, error) {
			n, err := r.Read(p)
			once.Do(func() { close(started) })
			return n, err
		})
	}
}

// appSession is an application connection running statements in the
// background, like a migration or a web request.
type appSession struct {
	c    *pgx.Conn
	pid  int
	done chan error
}

func openSession(t *testing.T, pg *testenv.Postgres, db string) *appSession {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return &appSession{c: c, pid: int(c.PgConn().PID()), done: make(chan error, 1)}
}

// start runs sql in the background; wait collects its result.
func (s *appSession) start(ctx context.Context, sql string) {
	go func() {
		_, err := s.c.Exec(ctx, sql)
		s.done <- err
	}()
}

func (s *appSession) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("session %d: %v", s.pid, err)
		}
	case <-time.After(within):
		t.Fatalf("session %d still waiting after %s", s.pid, within)
	}
}

// TestCaptureMaxRate dumps through PGBACKUPS_MAX_RATE and measures the rate
// at which pg_dump's output was read: within 10% of the limit. The rate is
// the limiter's pacing (dump.Pacing): time pg_dump or the machine took on
// their own, past what the limiter makes up for, is not counted against
// it, so a slow or loaded machine does not fail the test; bytes are
// counted outside the limiter.
func TestCaptureMaxRate(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 20_000) // a ~4 MB dump
	st := fileStore(t)
	o := options(t, pg, db, st)
	// Low enough that zstd keeps up even under the race detector: the
	// limiter caps the rate, it cannot make a slower pipeline faster.
	const limit = 1 << 20
	ns := dump.NewNoStall(dump.NoStallOptions{MaxRate: limit})
	pace := dump.WatchPacing(ns.Limiter)
	mark := pace.Mark()
	ns.Apply(&o)
	limited := o.Throttle
	if limited == nil {
		t.Fatal("PGBACKUPS_MAX_RATE installed no Throttle")
	}
	var n int64
	o.Throttle = func(r io.Reader) io.Reader {
		lr := limited(r)
		return readerFunc(func(p []byte) (int, error) {
			m, err := lr.Read(p)
			n += int64(m)
			return m, err
		})
	}
	start := time.Now()
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got, paced, lost := pace.Rate(n, mark)
	t.Logf("limit %d B/s: %d bytes in %s of pacing (%s lost by pg_dump or the machine) = %.0f B/s (%+.1f%%); capture took %s",
		limit, n, paced.Round(time.Millisecond), lost.Round(time.Millisecond), got, 100*(got/limit-1), time.Since(start).Round(time.Millisecond))
	if through := ns.Limiter.Total(); through != n {
		t.Fatalf("%d of pg_dump's %d bytes went through the limiter", through, n)
	}
	if pace.Sleeps() == 0 {
		t.Fatalf("the limiter never held pg_dump back in %d bytes: it ran slower than %d B/s throughout, and nothing was measured", n, limit)
	}
	if paced < 2*time.Second {
		t.Fatalf("dump of %d bytes paced for %s; the test needs a few seconds to measure", n, paced)
	}
	if got > 1.1*limit || got < 0.9*limit {
		t.Fatalf("read pg_dump at %.0f B/s, limit %d B/s", got, limit)
	}
	if m.DumpBytes != n {
		t.Errorf("manifest says %d dump bytes, %d were read", m.DumpBytes, n)
	}
}

// TestWatchdogAbort is the classic stall: a migration's ALTER TABLE waits
// for the dump's ACCESS SHARE lock and application queries queue behind the
// ALTER. The abort policy must stop the dump once the ALTER has waited the
// threshold, leave nothing listed, say who was blocked, and let the
// migration and the queue proceed.
func TestWatchdogAbort(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)
	st := fileStore(t)
	o := options(t, pg, db, st)
	log, logs := newLog()
	const threshold = 1500 * time.Millisecond
	ns := dump.NewNoStall(dump.NoStallOptions{MaxRate: 512 << 10, OnBlocking: dump.BlockingAbort, BlockingThreshold: threshold, Logger: log})
	ns.Watchdog.Interval = 200 * time.Millisecond
	ns.Apply(&o)
	started := make(chan struct{})
	onFirstRead(&o, started)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	migration, app := openSession(t, pg, db), openSession(t, pg, db)
	alterAt := make(chan time.Time, 1)
	go func() {
		<-started
		alterAt <- time.Now()
		migration.start(ctx, "ALTER TABLE app.users ADD COLUMN nickname text")
		time.Sleep(300 * time.Millisecond)
		app.start(ctx, "SELECT count(*) FROM app.users")
	}()
	m, abortedAfter, be, err := captureAborted(t, ctx, o, alterAt)
	t.Logf("aborted %s after the ALTER: %v", abortedAfter.Round(time.Millisecond), err)
	if abortedAfter < threshold || abortedAfter > threshold+2*time.Second {
		t.Errorf("aborted %s after the ALTER; want between the threshold %s and 2s later", abortedAfter, threshold)
	}
	byPID := map[int]dump.BlockedSession{}
	for _, s := range be.Blocked {
		byPID[s.PID] = s
	}
	if s, ok := byPID[migration.pid]; !ok || !s.Direct || !strings.Contains(s.Query, "ALTER TABLE app.users") || s.Waiting < threshold {
		t.Errorf("the ALTER (pid %d) is not reported as blocked directly past the threshold: %+v", migration.pid, be.Blocked)
	}
	if s, ok := byPID[app.pid]; !ok || s.Direct {
		t.Errorf("the query queued behind the ALTER (pid %d) is not reported as blocked transitively: %+v", app.pid, be.Blocked)
	}
	for _, want := range []string{"pid " + itoa(migration.pid), "ALTER TABLE app.users ADD COLUMN nickname text", "PGBACKUPS_ON_BLOCKING=abort"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	assertNothingListed(t, st, m)
	assertFailedRecorded(t, st, m, "PGBACKUPS_ON_BLOCKING=abort")
	// With the dump gone, the migration and the queue behind it proceed.
	migration.wait(t, 5*time.Second)
	app.wait(t, 5*time.Second)
	if ns.Blocking() != 0 {
		t.Errorf("Blocking() = %d after the dump ended", ns.Blocking())
	}
	if len(logs.lines("aborting")) != 1 {
		t.Errorf("want one abort log line:\n%s", logs)
	}
}

// captureAborted runs a capture the watchdog must abort, and returns how
// long after the time sent on at (the blocking statement's) it ended.
func captureAborted(t *testing.T, ctx context.Context, o dump.CaptureOptions, at <-chan time.Time) (storage.Manifest, time.Duration, *dump.BlockingError, error) {
	t.Helper()
	m, err := dump.Capture(ctx, o)
	var after time.Duration
	select {
	case sent := <-at:
		after = time.Since(sent)
	default:
		t.Fatalf("capture ended before the blocking statement was sent: %v", err)
	}
	var be *dump.BlockingError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *dump.BlockingError", err)
	}
	return m, after, be, err
}

// TestWatchdogMeasuresTheWait: a migration sent as one string runs a
// while before the statement that waits for the dump (here four seconds
// of pg_sleep, then ALTER TABLE). Its wait is counted from when it began
// waiting (pg_locks.waitstart, PostgreSQL 14), not from when the string
// started: the abort policy gives it the whole threshold, and the error
// reports the time it waited.
func TestWatchdogMeasuresTheWait(t *testing.T) {
	pg := testenv.PG(t)
	if pg.Major < 14 {
		t.Skip("pg_locks.waitstart is PostgreSQL 14's")
	}
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)
	st := fileStore(t)
	o := options(t, pg, db, st)
	const (
		before    = 4 * time.Second
		threshold = 1500 * time.Millisecond
	)
	ns := dump.NewNoStall(dump.NoStallOptions{MaxRate: 256 << 10, OnBlocking: dump.BlockingAbort, BlockingThreshold: threshold})
	ns.Watchdog.Interval = 200 * time.Millisecond
	ns.Apply(&o)
	started := make(chan struct{})
	onFirstRead(&o, started)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	migration := openSession(t, pg, db)
	sentAt := make(chan time.Time, 1)
	go func() {
		<-started
		sentAt <- time.Now()
		migration.start(ctx, fmt.Sprintf("SELECT pg_sleep(%d); ALTER TABLE app.users ADD COLUMN nickname text", int(before.Seconds())))
	}()
	_, abortedAfter, be, _ := captureAborted(t, ctx, o, sentAt)
	if abortedAfter < before+threshold {
		t.Errorf("aborted %s after the migration was sent; want at least %s: its %s before the ALTER counted as waiting", abortedAfter.Round(time.Millisecond), before+threshold, before)
	}
	reported := false
	for _, s := range be.Blocked {
		if s.PID != migration.pid {
			continue
		}
		reported = true
		if s.Waiting < threshold || s.Waiting >= before {
			t.Errorf("the migration is reported as waiting %s; it waited for the lock past the threshold %s and %s at most", s.Waiting, threshold, abortedAfter-before)
		}
	}
	if !reported {
		t.Errorf("the migration (pid %d) is not among the sessions the abort reports: %+v", migration.pid, be.Blocked)
	}
	migration.wait(t, 10*time.Second)
}

// TestWatchdogWarn: the default policy logs each blocked session once and
// lets the backup finish.
func TestWatchdogWarn(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)
	st := fileStore(t)
	o := options(t, pg, db, st)
	log, logs := newLog()
	ns := dump.NewNoStall(dump.NoStallOptions{MaxRate: 512 << 10, OnBlocking: dump.BlockingWarn, BlockingThreshold: 500 * time.Millisecond, Logger: log})
	ns.Watchdog.Interval = 100 * time.Millisecond
	ns.Apply(&o)
	started := make(chan struct{})
	onFirstRead(&o, started)

	ctx := context.Background()
	migration := openSession(t, pg, db)
	var sawBlocking atomic.Int64
	go func() {
		<-started
		migration.start(ctx, "ALTER TABLE app.users ADD COLUMN nickname text")
		// Let a few polls see the ALTER past the threshold, then let the
		// dump finish quickly.
		for deadline := time.Now().Add(20 * time.Second); len(logs.lines("the dump blocks a session")) == 0 && time.Now().Before(deadline); {
			sawBlocking.Store(max(sawBlocking.Load(), int64(ns.Blocking())))
			time.Sleep(20 * time.Millisecond)
		}
		sawBlocking.Store(max(sawBlocking.Load(), int64(ns.Blocking())))
		time.Sleep(500 * time.Millisecond)
		ns.Limiter.SetLimit(0)
	}()
	m, err := dump.Capture(ctx, o)
	if err != nil {
		t.Fatalf("capture under the warn policy: %v", err)
	}
	if m.Status != storage.StatusCompleted {
		t.Fatalf("status %s", m.Status)
	}
	warns := logs.lines("the dump blocks a session")
	if len(warns) != 1 || !strings.Contains(warns[0], `"pid":`+itoa(migration.pid)) || !strings.Contains(warns[0], "ALTER TABLE app.users") {
		t.Fatalf("want one warning naming pid %d and its ALTER, got:\n%s", migration.pid, strings.Join(warns, "\n"))
	}
	if sawBlocking.Load() < 1 {
		t.Errorf("Blocking() never reported the blocked session")
	}
	migration.wait(t, 5*time.Second)
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestAdaptiveRate runs the adaptive monitor against a cluster of its own
// (its signal is cluster-wide): it measures the baseline at the floor, an
// idle database lets the dump go unlimited, application sessions busy with
// statements push it down to the floor, and when they go idle it is lifted.
func TestAdaptiveRate(t *testing.T) {
	pg := testenv.NewCluster(t)
	conn, err := dump.ParseConn(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	a, l, logs := testAdaptive(t, time.Hour, 64<<20) // a dump faster than the ceiling
	stop := watch(t, a, conn)
	defer stop()

	// The baseline is measured at the floor.
	waitFor(t, func() bool { return l.Limit() == 1<<20 })
	// Idle database: from Start up to unlimited.
	waitFor(t, func() bool { return l.Limit() == 0 })
	if got := logs.lines("application load measured"); len(got) != 1 || !strings.Contains(got[0], `"active_sessions":0`) {
		t.Errorf("baseline not logged as 0 active sessions:\n%s", logs)
	} else if m := regexp.MustCompile(`"samples":(\d+)`).FindStringSubmatch(got[0]); m == nil || atoi(m[1]) < 60 {
		// 400 ms at 100 samples per 200 ms Interval is 200; ten per
		// Interval would give 20, too few for a steady baseline.
		t.Errorf("baseline taken from too few samples (want 60 or more):\n%s", got[0])
	}

	// Three sessions each running a statement: busy.
	stopLoad := busySessions(t, pg, 3)
	busySince := time.Now()
	waitFor(t, func() bool { return l.Limit() == 1<<20 })
	t.Logf("busy: at the floor after %s", time.Since(busySince).Round(time.Millisecond))

	stopLoad()
	idleSince := time.Now()
	waitFor(t, func() bool { return l.Limit() == 0 })
	t.Logf("idle: unlimited after %s", time.Since(idleSince).Round(time.Millisecond))

	changes := logs.lines("dump rate limit changed")
	if len(changes) < 4 || !strings.Contains(strings.Join(changes, ""), `"to":"unlimited"`) || !strings.Contains(strings.Join(changes, ""), `"to":"1.0 MiB/s"`) {
		t.Errorf("rate changes not logged:\n%s", logs)
	}
}

// TestAdaptiveRateSlowDump: a dump slower than its limit (CPU-bound, say)
// does not have the limit raised while the database is idle, and when the
// database gets busy the limit drops to 0.7 of what the dump actually
// runs at, not 0.7 of a limit it never reached.
func TestAdaptiveRateSlowDump(t *testing.T) {
	pg := testenv.NewCluster(t)
	conn, err := dump.ParseConn(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	a, l, logs := testAdaptive(t, time.Hour, 3<<20) // the dump manages ~3 MiB/s
	stop := watch(t, a, conn)
	defer stop()
	waitFor(t, func() bool { return l.Limit() == 8<<20 }) // Start, after the baseline
	time.Sleep(2 * time.Second)                           // ten idle Intervals
	if got := l.Limit(); got != 8<<20 {
		t.Fatalf("idle database, dump at ~3 MiB/s: limit %d, want it held at 8 MiB/s", got)
	}
	stopLoad := busySessions(t, pg, 3)
	defer stopLoad()
	waitFor(t, func() bool { return len(logs.lines("dump rate limit changed")) > 0 })
	first := logs.lines("dump rate limit changed")[0]
	t.Logf("first change: %s", first)
	// 0.7 of what the dump ran at over the Interval, not 5.6 MiB/s (0.7 of
	// 8). That rate is read from the same line: it is ~3 MiB/s, but a
	// loaded machine that holds the stand-in dump up for 15 ms of the
	// 200 ms Interval (past its 20 ms of credit) makes it 2.7, and 0.7 of
	// that reads 1.9 MiB/s.
	var change struct {
		From string `json:"from"`
		To   int64  `json:"limit_bytes_per_second"`
		Rate string `json:"dump_rate"`
	}
	if err := json.Unmarshal([]byte(first), &change); err != nil {
		t.Fatalf("first change %s: %v", first, err)
	}
	rate, err := config.ParseSize(strings.TrimSuffix(change.Rate, "/s"))
	if err != nil {
		t.Fatalf("first change %s: dump_rate: %v", first, err)
	}
	// dump_rate is rounded to a tenth of its unit.
	want, slack := max(float64(rate)*0.7, float64(a.Floor)), 0.7*0.05*(1<<20)
	if change.From != "8.0 MiB/s" || rate <= 0 || rate >= 4<<20 || math.Abs(float64(change.To)-want) > slack {
		t.Errorf("first change %s: want from 8 MiB/s to 0.7 of dump_rate (at most the stand-in's 3 MiB/s), %.0f B/s", first, want)
	}
}

// TestAdaptiveRateBaseline: load the application already had when the dump
// started is its baseline and does not hold the dump at the floor; load
// rising well above it does; and a new baseline, measured every Rebaseline,
// follows the application's level.
func TestAdaptiveRateBaseline(t *testing.T) {
	pg := testenv.NewCluster(t)
	conn, err := dump.ParseConn(pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	a, l, logs := testAdaptive(t, 4*time.Second, 64<<20)

	// Two statements in flight before the dump starts: busy by the
	// absolute rule (half a session or more), but only the application's usual level.
	stopBefore := busySessions(t, pg, 2)
	defer stopBefore()
	stop := watch(t, a, conn)
	defer stop()
	waitFor(t, func() bool { return l.Limit() == 1<<20 }) // measuring
	waitFor(t, func() bool { return l.Limit() == 0 })
	if got := logs.lines("application load measured"); len(got) == 0 || !strings.Contains(got[0], `"active_sessions":2`) {
		t.Fatalf("baseline not measured as 2 active sessions:\n%s", logs)
	}

	// Five in flight: 2 x 1.5 + 0.5 = 3.5 or more is busy, and the dump is
	// cut down to the floor against the baseline of 2 (a re-measure
	// also sets the floor, so the log, not the limit, shows it).
	stopMore := busySessions(t, pg, 3)
	defer stopMore()
	waitFor(t, func() bool {
		for _, l := range logs.lines("dump rate limit changed") {
			if strings.Contains(l, `"to":"1.0 MiB/s"`) && (strings.Contains(l, `"baseline":2,`) || strings.Contains(l, `"baseline":2}`)) {
				return true
			}
		}
		return false
	})

	// The next baseline sees five as the level, and the dump speeds up.
	waitFor(t, func() bool {
		return strings.Contains(strings.Join(logs.lines("application load measured"), ""), `"active_sessions":5`)
	})
	waitFor(t, func() bool { return l.Limit() == 0 })
}

// testAdaptive is an adaptive rate on a fast clock (limits 1 MiB/s floor,
// 8 MiB/s start, 12 MiB/s blind, 16 MiB/s ceiling; 200 ms interval, 400 ms baseline),
// logging at debug level into logs. A stand-in dump reads through its
// Limiter until the test ends, at most maxRate bytes/s (64 KiB at a time).
func testAdaptive(t *testing.T, rebaseline time.Duration, maxRate int64) (*dump.Adaptive, *dump.Limiter, *logBuffer) {
	log, logs := newLog()
	l := dump.NewLimiter(0)
	done := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		r := l.Reader(&pacedZeros{rate: maxRate, done: done})
		io.Copy(io.Discard, r)
	}()
	t.Cleanup(func() { close(done); <-fed })
	return &dump.Adaptive{Limiter: l, Floor: 1 << 20, Start: 8 << 20, Blind: 12 << 20, Ceiling: 16 << 20,
		Interval: 200 * time.Millisecond, Baseline: 400 * time.Millisecond, Rebaseline: rebaseline, Logger: log}, l, logs
}

// pacedZeros yields zeros at no more than rate bytes/s until done is
// closed. Like a CPU-bound pg_dump, it earns next to no credit while it is
// held back: after the limiter slowed it, it does not catch up in a burst
// (20 ms of credit absorbs timer overshoot, so the pace stays accurate).
type pacedZeros struct {
	rate int64
	done chan struct{}
	next time.Time // when the next chunk may go
}

func (z *pacedZeros) Read(p []byte) (int, error) {
	now := time.Now()
	if earliest := now.Add(-20 * time.Millisecond); z.next.Before(earliest) {
		z.next = earliest
	}
	select {
	case <-z.done:
		return 0, io.EOF
	case <-time.After(z.next.Sub(now)):
	}
	n := min(len(p), 64<<10)
	clear(p[:n])
	z.next = z.next.Add(time.Duration(float64(n) / float64(z.rate) * float64(time.Second)))
	return n, nil
}

// watch runs a.Watch until the returned func is called.
func watch(t *testing.T, a *dump.Adaptive, conn dump.Conn) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- a.Watch(ctx, dump.Running{ID: "t", AppName: dump.AppName("t"), Conn: conn}) }()
	return func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}
}

// busySessions starts n sessions that each keep a statement running until
// the returned func is called.
func busySessions(t *testing.T, pg *testenv.Postgres, n int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var load []*appSession
	for range n {
		s := openSession(t, pg, "postgres")
		s.start(ctx, "SELECT pg_sleep(120)")
		load = append(load, s)
	}
	// Return once every statement runs, so that a baseline taken next
	// sees all of them even on a slow machine.
	pids := make([]int32, len(load))
	for i, s := range load {
		pids[i] = int32(s.pid)
	}
	probe := openSession(t, pg, "postgres")
	waitFor(t, func() bool {
		var running int
		err := probe.c.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE pid = ANY($1) AND state = 'active' AND query LIKE 'SELECT pg_sleep%'`, pids).Scan(&running)
		return err == nil && running == n
	})
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for _, s := range load {
			<-s.done // cancelled
		}
	}
}

// TestSizeGuard: a database over PGBACKUPS_LOGICAL_LIMIT is still backed
// up, with a warning in the logs and in the stored manifest.
func TestSizeGuard(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	st := fileStore(t)

	o := options(t, pg, db, st)
	log, logs := newLog()
	o.Logger = log
	dump.NewNoStall(dump.NoStallOptions{LogicalLimit: 1 << 20}).Apply(&o) // 1 MiB: every database is larger
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !dump.OverLogicalLimit(m.DatabaseBytes, 1<<20) {
		t.Fatalf("database of %d bytes not over 1 MiB", m.DatabaseBytes)
	}
	stored, err := storage.Catalog{Store: st}.Manifest(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Warnings) != 1 || !strings.Contains(stored.Warnings[0], "PGBACKUPS_LOGICAL_LIMIT=1.0 MiB") || !strings.Contains(stored.Warnings[0], "physical") {
		t.Fatalf("manifest warnings = %q", stored.Warnings)
	}
	if len(logs.lines("over PGBACKUPS_LOGICAL_LIMIT")) != 1 {
		t.Fatalf("want one warning log line:\n%s", logs)
	}

	o = options(t, pg, db, st)
	dump.NewNoStall(dump.NoStallOptions{LogicalLimit: 20e9}).Apply(&o)
	if m, err := dump.Capture(context.Background(), o); err != nil || len(m.Warnings) != 0 {
		t.Fatalf("under the limit: warnings %q, err %v", m.Warnings, err)
	}
}

func TestSizeWarning(t *testing.T) {
	for _, tc := range []struct {
		size, limit int64
		over        bool
	}{{100, 0, false}, {100, 100, false}, {101, 100, true}, {25e9, 20e9, true}} {
		if got := dump.OverLogicalLimit(tc.size, tc.limit); got != tc.over {
			t.Errorf("OverLogicalLimit(%d, %d) = %v", tc.size, tc.limit, got)
		}
		if w := dump.SizeWarning(tc.size, tc.limit); (w != "") != tc.over {
			t.Errorf("SizeWarning(%d, %d) = %q", tc.size, tc.limit, w)
		}
	}
	if w := dump.SizeWarning(25e9, 20e9); !strings.Contains(w, "23.3 GiB") || !strings.Contains(w, "18.6 GiB") {
		t.Errorf("warning does not give sizes: %s", w)
	}
}

// TestAdaptiveRateUnmeasured: when the database cannot be queried, no
// baseline is made up: the dump leaves the floor for its starting limit and
// holds it.
func TestAdaptiveRateUnmeasured(t *testing.T) {
	conn, err := dump.ParseConn("postgres://app@127.0.0.1:1/app?connect_timeout=1&sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	a, l, logs := testAdaptive(t, time.Hour, 64<<20)
	stop := watch(t, a, conn)
	waitFor(t, func() bool { return l.Limit() == 1<<20 })
	waitFor(t, func() bool { return l.Limit() == 12<<20 }) // Blind: never measured
	stop()
	if got := logs.lines("application load measured"); len(got) != 0 {
		t.Errorf("a baseline was reported without a sample: %q", got)
	}
	if len(logs.lines("cannot query the database")) == 0 {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
}
