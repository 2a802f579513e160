package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// logBuffer collects a daemon's logs; goroutines write it concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func mustParse(t *testing.T, spec string) *schedule.Schedule {
	t.Helper()
	s, err := schedule.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// runningClock reads base plus the real time since it was made: timers
// stay real while decisions see a chosen moment of the schedule.
func runningClock(base time.Time) func() time.Time {
	start := time.Now()
	return func() time.Time { return base.Add(time.Since(start)) }
}

func manifest(id string, finished time.Time, took time.Duration) storage.Manifest {
	return storage.Manifest{
		ID: id, Status: storage.StatusCompleted, Database: "app",
		StartedAt: finished.Add(-took), FinishedAt: finished,
		DumpBytes: 1000, StoredBytes: 300, DatabaseBytes: 5000,
	}
}

func newDaemon(t *testing.T, o Options) (*Daemon, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

func getHealth(t *testing.T, h http.Handler) (int, Health) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	var body Health
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("/healthz body: %v\n%s", err, rec.Body)
	}
	return rec.Code, body
}

// hourlyDaemon is a daemon backing up hourly with 10 minutes of grace, on
// a fake clock started at start.
func hourlyDaemon(t *testing.T, start time.Time) (*Daemon, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: start}
	d, _ := newDaemon(t, Options{
		Schedule:    mustParse(t, "0 * * * *"),
		Capture:     func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		HealthGrace: 10 * time.Minute,
		Now:         clock.Now,
	})
	return d, clock
}

// TestHealthTransitions walks /healthz through its states on a fake clock:
// hourly backups, 10 minutes of grace.
func TestHealthTransitions(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	d, clock := hourlyDaemon(t, start)
	h := d.Handler()
	step := func(at time.Time, wantCode int, wantStatus string) Health {
		t.Helper()
		clock.Set(at)
		code, body := getHealth(t, h)
		if code != wantCode || body.Status != wantStatus {
			t.Fatalf("at %s: %d %q (%s), want %d %q", at.Format(time.TimeOnly), code, body.Status, body.Reason, wantCode, wantStatus)
		}
		return body
	}

	// Just started, nothing due yet: healthy until the first run (11:00)
	// plus the grace.
	body := step(start, 200, StatusOK)
	if body.NextRun == nil || *body.NextRun != "2026-03-01T11:00:00Z" || body.Schedule != "0 * * * *" || body.TimeZone != "UTC" {
		t.Errorf("next_run %v, schedule %q, zone %q", body.NextRun, body.Schedule, body.TimeZone)
	}
	if body.LastSuccess != nil || body.LastFailure != nil {
		t.Errorf("fresh daemon reports %+v %+v", body.LastSuccess, body.LastFailure)
	}
	step(start.Add(40*time.Minute), 200, StatusOK)
	step(start.Add(40*time.Minute+time.Second), 503, StatusOverdue)

	// A success makes it healthy again, until the run after it (12:00)
	// plus the grace.
	ok1 := start.Add(72 * time.Minute)
	d.recordSuccess(manifest("20260301-114000-aaaa", ok1, time.Minute), "this daemon")
	body = step(ok1, 200, StatusOK)
	if body.LastSuccess == nil || body.LastSuccess.ID != "20260301-114000-aaaa" || body.LastSuccess.By != "this daemon" {
		t.Errorf("last_success %+v", body.LastSuccess)
	}
	step(ok1.Add(28*time.Minute), 200, StatusOK)
	step(ok1.Add(28*time.Minute+time.Second), 503, StatusOverdue)

	// A failure after the success: failing at once, whatever the window.
	fail := ok1.Add(5 * time.Minute)
	clock.Set(fail)
	d.failed(context.Background(), outcome{started: fail}, 1, errors.New("pre-flight: connection refused"))
	body = step(fail, 503, StatusFailing)
	if body.LastFailure == nil || body.LastFailure.Error != "pre-flight: connection refused" || body.LastFailure.Attempt != 1 {
		t.Errorf("last_failure %+v", body.LastFailure)
	}

	// An older success (storage, read late) does not hide the failure.
	d.recordSuccess(manifest("20260301-110000-bbbb", ok1.Add(-time.Hour), time.Minute), "storage")
	body = step(fail.Add(time.Second), 503, StatusFailing)
	if body.LastSuccess.ID != "20260301-114000-aaaa" {
		t.Errorf("an older success replaced the newer: %+v", body.LastSuccess)
	}

	// The next success heals it.
	ok2 := fail.Add(10 * time.Minute)
	d.recordSuccess(manifest("20260301-125500-cccc", ok2, time.Minute), "this daemon")
	step(ok2, 200, StatusOK)
}

func TestHealthWithoutSchedule(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	d, _ := newDaemon(t, Options{Now: clock.Now, HealthGrace: time.Minute})
	for _, after := range []time.Duration{0, 24 * time.Hour, 365 * 24 * time.Hour} {
		clock.Set(clock.Now().Add(after))
		code, body := getHealth(t, d.Handler())
		if code != 200 || body.Status != StatusOK || body.NextRun != nil || body.Schedule != "" || !strings.Contains(body.Reason, "no schedule") {
			t.Errorf("after %s: %d %+v", after, code, body)
		}
	}
}

// TestStartupReadsAFailureAfterTheLastSuccess: a daemon restarted after a
// failed backup (a liveness probe, a node drain) reports it, rather than
// the older success, until a backup succeeds.
func TestStartupReadsAFailureAfterTheLastSuccess(t *testing.T) {
	ok := manifest("20260301-020000-good", time.Date(2026, 3, 1, 2, 1, 0, 0, time.UTC), time.Minute)
	failed := storage.Manifest{ID: "20260302-020000-fail", Status: storage.StatusFailed, Error: "pg_dump: server closed the connection",
		StartedAt: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC), FinishedAt: time.Date(2026, 3, 2, 2, 0, 5, 0, time.UTC)}
	clock := &fakeClock{t: time.Date(2026, 3, 2, 2, 30, 0, 0, time.UTC)}
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest:   func(context.Context) (storage.Manifest, *storage.Manifest, error) { return ok, &failed, nil },
		Now:      clock.Now,
	})
	d.loadLatest(context.Background())
	code, body := getHealth(t, d.Handler())
	if code != 503 || body.Status != StatusFailing || body.LastFailure == nil || body.LastFailure.Error != failed.Error || body.LastSuccess == nil || body.LastSuccess.ID != ok.ID {
		t.Errorf("/healthz after a restart: %d %+v (failure %+v, success %+v)", code, body.Status, body.LastFailure, body.LastSuccess)
	}
	if got := counter(t, d, "pgbackups_last_failure_timestamp_seconds"); got != float64(failed.FinishedAt.Unix()) {
		t.Errorf("last failure timestamp %v", got)
	}
	if !strings.Contains(logs.String(), "the newest backup in storage failed") {
		t.Errorf("not logged:\n%s", logs)
	}
	// The next success heals it.
	d.recordSuccess(manifest("20260302-030000-next", clock.Now(), time.Minute), "this daemon")
	if code, _ := getHealth(t, d.Handler()); code != 200 {
		t.Errorf("/healthz %d after a success", code)
	}
}

// TestHealthOverdueAcrossRestart: a daemon that reads a week-old success
// from storage at start-up is overdue from the run due after it, not from
// its own start: a nightly OOM kill and restart, or a pre-flight failure
// that stores no failed manifest, must not keep /healthz at 200.
func TestHealthOverdueAcrossRestart(t *testing.T) {
	old := manifest("20260305-020000-week", time.Date(2026, 3, 5, 2, 1, 0, 0, time.UTC), time.Minute)
	clock := &fakeClock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	// restarted is a daemon (02:00 UTC, an hour's grace) just started over
	// a storage whose newest backup is latest (or none: err).
	restarted := func(latest storage.Manifest, err error) *Daemon {
		d, _ := newDaemon(t, Options{
			Schedule:    mustParse(t, "02:00 UTC"),
			Capture:     func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
			Latest:      func(context.Context) (storage.Manifest, *storage.Manifest, error) { return latest, nil, err },
			HealthGrace: time.Hour,
			Now:         clock.Now,
		})
		d.loadLatest(context.Background())
		return d
	}
	d := restarted(old, nil)
	code, body := getHealth(t, d.Handler())
	if code != 503 || body.Status != StatusOverdue || !strings.Contains(body.Reason, "due at 2026-03-06T02:00:00Z") || !strings.Contains(body.Reason, "the last success") {
		t.Errorf("/healthz after a restart with a week-old success: %d %q (%s), want 503 overdue naming the run due 2026-03-06T02:00:00Z", code, body.Status, body.Reason)
	}
	if got := counter(t, d, "pgbackups_healthy"); got != 0 {
		t.Errorf("pgbackups_healthy %v, want 0", got)
	}

	// A success that started a moment before its run's time and ended
	// after it (a replica's clock two seconds behind) is that run's: the
	// run due after it is tomorrow's.
	clock.Set(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC))
	early := manifest("20260310-015958-skew", time.Date(2026, 3, 10, 2, 29, 58, 0, time.UTC), 30*time.Minute) // started 01:59:58
	d = restarted(early, nil)
	if code, body := getHealth(t, d.Handler()); code != 200 {
		t.Errorf("/healthz after a restart, the last success started 2 s before its run: %d %q (%s), want 200", code, body.Status, body.Reason)
	}
	// A success that started for the run before and overran past this
	// run's time (25 hours) is not this run's: that run was skipped.
	overran := manifest("20260309-020000-long", time.Date(2026, 3, 10, 3, 0, 0, 0, time.UTC), 25*time.Hour)
	d = restarted(overran, nil)
	if code, body := getHealth(t, d.Handler()); code != 503 || !strings.Contains(body.Reason, "due at 2026-03-10T02:00:00Z") {
		t.Errorf("/healthz after a restart, the last success overran the run after it: %d %q (%s), want 503 overdue for 2026-03-10T02:00:00Z", code, body.Status, body.Reason)
	}
	clock.Set(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))

	// With no success known at all, start-up is the base: a fresh daemon
	// over an empty storage is not overdue before its first run.
	d = restarted(storage.Manifest{}, storage.ErrNoBackups)
	if code, body := getHealth(t, d.Handler()); code != 200 {
		t.Errorf("/healthz with no success known: %d %q (%s), want 200 until the first run", code, body.Status, body.Reason)
	}
	clock.Set(time.Date(2026, 3, 11, 3, 0, 1, 0, time.UTC))
	if code, body := getHealth(t, d.Handler()); code != 503 || body.Status != StatusOverdue || !strings.Contains(body.Reason, "start-up") {
		t.Errorf("/healthz past the first run plus the grace: %d %q (%s)", code, body.Status, body.Reason)
	}
}

// TestLiveness: /livez is about the daemon, not its backups: 200 while a
// failing backup makes /healthz 503, 503 when a scheduled run is ten
// minutes late to start with nothing running.
func TestLiveness(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	d, clock := hourlyDaemon(t, start)
	live := func(at time.Time, want int) {
		t.Helper()
		clock.Set(at)
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("/livez body: %v\n%s", err, rec.Body)
		}
		if rec.Code != want || (want == 503) != strings.Contains(body["reason"], "scheduler is stuck") {
			t.Errorf("at %s: /livez %d %v, want %d", at.Format(time.TimeOnly), rec.Code, body, want)
		}
	}
	d.failed(context.Background(), outcome{started: start}, 1, errors.New("pre-flight: connection refused"))
	if code, _ := getHealth(t, d.Handler()); code != 503 {
		t.Fatalf("/healthz %d after a failure, want 503", code)
	}
	live(start, 200)
	due := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	live(due.Add(livenessSlack), 200)
	live(due.Add(livenessSlack+time.Second), 503)
	d.enter() // as the scheduled run does
	d.state.ticked(due)
	live(due.Add(5*time.Hour), 200) // a run under way (retention, retries, following) is no stuck scheduler
	d.state.ranUntil(due.Add(time.Minute))
	d.leave()
	live(due.Add(livenessSlack+time.Second), 200)
	live(due.Add(time.Hour+livenessSlack+time.Second), 503) // the 12:00 run never started
	// A run that overran the next (the 12:00 one, dropped by the
	// scheduler, ended 13:15): the next due is 14:00, not 13:00.
	d.state.ticked(due.Add(time.Hour))
	d.state.ranUntil(due.Add(2*time.Hour + 15*time.Minute))
	live(due.Add(2*time.Hour+50*time.Minute), 200)
	live(due.Add(3*time.Hour+livenessSlack+time.Second), 503)
	d.state.begin(due.Add(3*time.Hour), 1) // a backup running outside a scheduled run (none here, but running)
	live(due.Add(5*time.Hour), 200)
}

// TestRunDueWhileStarting: the daemon is built at 01:59:58 and reading
// storage takes until 02:00:03, so gocron, started then, schedules
// tomorrow's 02:00. The 02:00 run is run at once and said in the log, not
// lost, and /livez does not call the scheduler stuck from 02:10 on.
func TestRunDueWhileStarting(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 1, 59, 58, 0, time.UTC)}
	ran := make(chan struct{}, 1)
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			ran <- struct{}{}
			return manifest("20260310-020003-late", clock.Now(), time.Second), nil
		},
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			clock.Set(time.Date(2026, 3, 10, 2, 0, 3, 0, time.UTC)) // a slow listing
			return manifest("20260309-020000-prev", time.Date(2026, 3, 9, 2, 1, 0, 0, time.UTC), time.Minute), nil, nil
		},
		HealthGrace: time.Hour,
		Now:         clock.Now,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Errorf("the run due at 02:00, while the daemon was starting, did not run\n%s", logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "came due while the daemon was starting") || !strings.Contains(logs.String(), "2026-03-10T02:00:00Z") {
		t.Errorf("the run due during start-up is not logged by its time:\n%s", logs)
	}
	clock.Set(time.Date(2026, 3, 10, 2, 11, 0, 0, time.UTC))
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
	if rec.Code != 200 {
		t.Errorf("/livez at 02:11: %d %s", rec.Code, rec.Body)
	}
	if code, body := getHealth(t, d.Handler()); code != 200 || body.LastSuccess == nil || body.LastSuccess.ID != "20260310-020003-late" {
		t.Errorf("/healthz at 02:11: %d %q, last success %+v", code, body.Status, body.LastSuccess)
	}
}

// TestRunDueWhileStartingTakenElsewhere: the run due while the daemon was
// starting is run late; another replica may have taken it meanwhile, so
// storage is looked at under the lock first, and no second dump is taken.
func TestRunDueWhileStartingTakenElsewhere(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 1, 59, 58, 0, time.UTC)}
	var captures, lists atomic.Int32
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			captures.Add(1)
			return manifest("20260310-020003-dupl", clock.Now(), time.Second), nil
		},
		Lock: &heldLock{heldFor: -1},
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if lists.Add(1) == 1 { // at start-up, slowly
				clock.Set(time.Date(2026, 3, 10, 2, 0, 3, 0, time.UTC))
				return manifest("20260309-020000-prev", time.Date(2026, 3, 9, 2, 1, 0, 0, time.UTC), time.Minute), nil, nil
			}
			// Another replica took the 02:00 run while this one started.
			return manifest("20260310-020000-othr", time.Date(2026, 3, 10, 2, 0, 2, 0, time.UTC), 2*time.Second), nil, nil
		},
		HealthGrace: time.Hour,
		Now:         clock.Now,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	took := func() bool { s := d.state.lastSuccess(); return s != nil && s.ID == "20260310-020000-othr" }
	for deadline := time.Now().Add(5 * time.Second); !took() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !took() {
		t.Errorf("the other replica's backup of the run due at start-up was not taken as this run's\n%s", logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := captures.Load(); n != 0 {
		t.Errorf("captured %d times: the run due at start-up was dumped again after another replica took it", n)
	}
}

// TestLivenessFromSchedulerStart: /livez judges lateness from when the
// scheduler started, not from New: a run due before that (while storage
// was read) was never the scheduler's to start.
func TestLivenessFromSchedulerStart(t *testing.T) {
	d, clock := hourlyDaemon(t, time.Date(2026, 3, 10, 1, 59, 58, 0, time.UTC))
	d.state.scheduling(time.Date(2026, 3, 10, 2, 0, 3, 0, time.UTC))
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{time.Date(2026, 3, 10, 2, 11, 0, 0, time.UTC), 200},
		{time.Date(2026, 3, 10, 3, 10, 0, 0, time.UTC), 200},
		{time.Date(2026, 3, 10, 3, 10, 1, 0, time.UTC), 503}, // the 03:00 run never started
	} {
		clock.Set(tc.at)
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
		if rec.Code != tc.want {
			t.Errorf("/livez at %s: %d %s, want %d", tc.at.Format(time.TimeOnly), rec.Code, rec.Body, tc.want)
		}
	}
}

// TestHealthDeadline: overdue is judged against the run due after the
// last success (daily in Los Angeles here, across the fall-back), and a
// backup still running, here or in the process that took the run, is not
// overdue until the run after it is due.
func TestHealthDeadline(t *testing.T) {
	s := mustParse(t, "02:00 America/Los_Angeles")
	start := time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC) // 05:00 PDT
	due := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)    // 02:00 PST, after the fall-back
	next := due.Add(24 * time.Hour)
	newD := func() (*Daemon, *fakeClock) {
		clock := &fakeClock{t: start}
		d, _ := newDaemon(t, Options{Schedule: s, Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil }, HealthGrace: time.Hour, Now: clock.Now})
		return d, clock
	}
	check := func(d *Daemon, clock *fakeClock, at time.Time, want int) {
		t.Helper()
		clock.Set(at)
		code, body := getHealth(t, d.Handler())
		if code != want {
			t.Errorf("at %s: %d %q (%s), want %d", at.Format(time.RFC3339), code, body.Status, body.Reason, want)
		}
		if want == 503 && (body.Status != StatusOverdue || !strings.Contains(body.Reason, "PGBACKUPS_HEALTH_GRACE") || !strings.Contains(body.Reason, "due at ")) {
			t.Errorf("at %s: %q %q, want overdue naming the due run", at.Format(time.RFC3339), body.Status, body.Reason)
		}
	}

	d, clock := newD()
	check(d, clock, due.Add(time.Hour), 200)
	check(d, clock, due.Add(time.Hour+time.Second), 503)

	// The due run is under way and takes longer than the grace: fine until
	// the next run is due, plus the grace.
	d.state.begin(due, 1)
	check(d, clock, due.Add(time.Hour+time.Second), 200)
	check(d, clock, next.Add(time.Hour), 200)
	check(d, clock, next.Add(time.Hour+time.Second), 503)
	// It succeeds: due again at the next run.
	d.state.end()
	d.recordSuccess(manifest("20261101-100000-aaaa", due.Add(150*time.Minute), 150*time.Minute), "this daemon")
	check(d, clock, next.Add(time.Hour), 200)
	check(d, clock, next.Add(time.Hour+time.Second), 503)

	// Another process took the due run (this one skipped it): the same.
	d, clock = newD()
	d.state.skipped(&Skip{At: due, Reason: "another pgbackups holds the lock"})
	check(d, clock, due.Add(time.Hour+time.Second), 200)
	check(d, clock, next.Add(time.Hour+time.Second), 503)

	// A backup that started before the due run and still runs is late.
	d, clock = newD()
	d.state.begin(due.Add(-time.Hour), 1)
	check(d, clock, due.Add(time.Hour+time.Second), 503)
}

func TestRetryPlan(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	next := tick.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		retry   Retry
		attempt int
		now     time.Time
		pause   time.Duration
		took    time.Duration
		lastOK  time.Duration // duration of the last success; 0: none
		want    string        // "" retries; else part of the reason
	}{
		{"first retry", Retry{Max: 3}, 1, tick.Add(time.Minute), time.Minute, time.Second, 0, ""},
		{"retries used", Retry{Max: 3}, 4, tick.Add(time.Minute), time.Minute, time.Second, 0, "PGBACKUPS_RETRY_MAX=3"},
		{"no retries", Retry{Max: 0}, 1, tick, time.Minute, 0, 0, "PGBACKUPS_RETRY_MAX=0"},
		{"past max time", Retry{Max: 9, MaxTime: 10 * time.Minute}, 3, tick.Add(8 * time.Minute), 4 * time.Minute, 0, 0, "PGBACKUPS_RETRY_MAX_TIME"},
		{"within max time", Retry{Max: 9, MaxTime: 10 * time.Minute}, 3, tick.Add(5 * time.Minute), 4 * time.Minute, 0, 0, ""},
		{"would start at next run", Retry{Max: 9}, 2, tick.Add(58 * time.Minute), 2 * time.Minute, 0, 0, "next scheduled run"},
		{"would finish after next run", Retry{Max: 9}, 2, tick.Add(50 * time.Minute), 2 * time.Minute, 9 * time.Minute, 0, "next scheduled run"},
		{"last success was long", Retry{Max: 9}, 1, tick.Add(10 * time.Minute), time.Minute, time.Second, 50 * time.Minute, "next scheduled run"},
		{"fits before next run", Retry{Max: 9}, 2, tick.Add(50 * time.Minute), 2 * time.Minute, 5 * time.Minute, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: tc.now}
			d, _ := newDaemon(t, Options{Schedule: mustParse(t, "0 * * * *"), Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil }, Retry: tc.retry, Now: clock.Now})
			if tc.lastOK > 0 {
				d.recordSuccess(manifest("20260301-010000-aaaa", tick.Add(-time.Hour+tc.lastOK), tc.lastOK), "storage")
			}
			at, why := d.retryPlan(tc.attempt, tick, next, tc.pause, tc.took)
			if tc.want == "" {
				if why != "" || !at.Equal(tc.now.Add(tc.pause)) {
					t.Errorf("got (%v, %q), want a retry at %v", at, why, tc.now.Add(tc.pause))
				}
			} else if !strings.Contains(why, tc.want) {
				t.Errorf("reason %q, want it to mention %q", why, tc.want)
			}
		})
	}
}

// failingCapture fails its first n calls, then succeeds; it counts calls.
type failingCapture struct {
	mu    sync.Mutex
	fails int
	calls []time.Time
}

func (f *failingCapture) capture(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, time.Now())
	progress.Add(1000)
	if len(f.calls) <= f.fails {
		return storage.Manifest{}, fmt.Errorf("pg_dump: exit status 1: attempt %d", len(f.calls))
	}
	now := time.Now().UTC()
	return manifest(storage.NewID(now), now, 10*time.Millisecond), nil
}

func (f *failingCapture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// TestRetriesStopBeforeNextRun runs a scheduled run whose backups keep
// failing, a second and a half before the next scheduled run, with a
// 250ms first pause: retries at +250ms and +750ms fit, the one at +1750ms
// does not. The margins suit a loaded machine: the retry due at +250ms is
// still made if it starts up to 750ms late, and the run may take a second
// more than its 750ms before it counts as having slept the pause it
// should not.
func TestRetriesStopBeforeNextRun(t *testing.T) {
	const backoff = 250 * time.Millisecond
	base := time.Date(2026, 3, 1, 2, 0, 58, 5e8, time.UTC) // next run: 02:01:00
	fc := &failingCapture{fails: 100}
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 * * * * *"),
		Capture:  fc.capture,
		Retry:    Retry{Max: 10, Backoff: backoff},
		Now:      runningClock(base),
	})
	ctx := context.Background()
	start := time.Now()
	d.runScheduled(ctx, ctx, d.now())
	if n := fc.count(); n != 3 {
		t.Errorf("%d attempts, want 3 (0, +250ms, +750ms)\n%s", n, logs)
	}
	// Timers never fire early: a run that slept the third pause (4 x
	// backoff) after the third attempt took at least 1750ms.
	if took := time.Since(start); took >= 7*backoff {
		t.Errorf("run took %s: it waited for a retry it should not make", took)
	}
	if !strings.Contains(logs.String(), "would run into the next scheduled run") {
		t.Errorf("logs do not say why retries stopped:\n%s", logs)
	}
	if got := counter(t, d, `pgbackups_backups_total{result="failure"}`); got != 3 {
		t.Errorf("failure counter %v, want 3", got)
	}
	if code, body := getHealth(t, d.Handler()); code != 503 || body.Status != StatusFailing || body.LastFailure.Attempt != 3 {
		t.Errorf("/healthz %d %+v", code, body)
	}
}

func TestRetrySucceeds(t *testing.T) {
	fc := &failingCapture{fails: 2}
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture:  fc.capture,
		Retry:    Retry{Max: 3, Backoff: 20 * time.Millisecond},
	})
	ctx := context.Background()
	d.runScheduled(ctx, ctx, d.now())
	if n := fc.count(); n != 3 {
		t.Errorf("%d attempts, want 3\n%s", n, logs)
	}
	if gap := fc.calls[2].Sub(fc.calls[1]); gap < 40*time.Millisecond {
		t.Errorf("second pause %s, want the backoff doubled to 40ms", gap)
	}
	if got := counter(t, d, `pgbackups_backups_total{result="success"}`); got != 1 {
		t.Errorf("success counter %v", got)
	}
	if code, body := getHealth(t, d.Handler()); code != 200 || body.LastSuccess == nil || body.LastFailure == nil {
		t.Errorf("/healthz after a retry succeeded: %d %+v", code, body)
	}
	if !strings.Contains(logs.String(), "backup completed") || !strings.Contains(logs.String(), "rate_bytes_per_second") {
		t.Errorf("no per-backup line:\n%s", logs)
	}
}

func TestRetryMaxZeroNeverRetries(t *testing.T) {
	fc := &failingCapture{fails: 5}
	d, _ := newDaemon(t, Options{Schedule: mustParse(t, "0 0 * * *"), Capture: fc.capture, Retry: Retry{Max: 0, Backoff: time.Millisecond}})
	ctx := context.Background()
	d.runScheduled(ctx, ctx, d.now())
	if n := fc.count(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// heldLock is a Locker another process holds: by pid 4242 for its first
// heldFor calls (0: always; -1: never).
type heldLock struct {
	calls   atomic.Int32
	heldFor int32
}

func (l *heldLock) Hold(ctx context.Context) (context.Context, func(), error) {
	if n := l.calls.Add(1); l.heldFor == 0 || n <= l.heldFor {
		return nil, nil, &HeldError{PID: 4242, Application: "pgbackups"}
	}
	return ctx, func() {}, nil
}

// TestSkippedRun: the lock is held elsewhere, so the run is skipped (not a
// failure, no capture), and the holder's backup, once in storage, becomes
// this daemon's last success.
func TestSkippedRun(t *testing.T) {
	var published atomic.Pointer[storage.Manifest]
	fc := &failingCapture{}
	lock := &heldLock{}
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture:  fc.capture,
		Lock:     lock,
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if m := published.Load(); m != nil {
				return *m, nil, nil
			}
			return storage.Manifest{}, nil, storage.ErrNoBackups
		},
		FollowInterval: 20 * time.Millisecond,
	})
	tick := d.now()
	go func() {
		time.Sleep(100 * time.Millisecond)
		m := manifest("20260301-020000-hold", time.Now(), time.Second)
		published.Store(&m)
	}()
	// Without the holder's backup seen, the run would follow storage until
	// the next midnight: stopping after ten seconds bounds the test.
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.runScheduled(stop, context.Background(), tick)
	if fc.count() != 0 || lock.calls.Load() < 1 {
		t.Errorf("capture called %d times, lock %d; want 0 and at least 1", fc.count(), lock.calls.Load())
	}
	if got := counter(t, d, `pgbackups_backups_total{result="skipped"}`); got != 1 {
		t.Errorf("skipped counter %v", got)
	}
	if got := counter(t, d, `pgbackups_backups_total{result="failure"}`); got != 0 {
		t.Errorf("failure counter %v", got)
	}
	code, body := getHealth(t, d.Handler())
	if code != 200 || body.LastSkip == nil || !strings.Contains(body.LastSkip.Reason, "pid 4242") {
		t.Errorf("/healthz %d %+v", code, body.LastSkip)
	}
	if body.LastSuccess == nil || body.LastSuccess.ID != "20260301-020000-hold" || body.LastSuccess.By != "storage" {
		t.Errorf("last_success %+v, want the lock holder's backup", body.LastSuccess)
	}
	if !strings.Contains(logs.String(), "another pgbackups holds the lock (server backend pid 4242") {
		t.Errorf("the skip is not logged with the holder's pid:\n%s", logs)
	}
}

// TestSkippedRunLockFreed: the lock holder lets go without a backup (a
// prune held it, or its backup failed): the skipped run is attempted
// again, not lost until the next scheduled run.
func TestSkippedRunLockFreed(t *testing.T) {
	fc := &failingCapture{}
	lock := &heldLock{heldFor: 3} // the run's attempt and two looks while following
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture:  fc.capture,
		Lock:     lock,
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			return storage.Manifest{}, nil, storage.ErrNoBackups // the holder stores nothing
		},
		FollowInterval: 20 * time.Millisecond,
	})
	// Without the second attempt the run would follow storage until the
	// next midnight: stopping after ten seconds bounds the test.
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.runScheduled(stop, context.Background(), d.now())
	if fc.count() != 1 {
		t.Fatalf("capture called %d times after the lock came free; want 1", fc.count())
	}
	if got := counter(t, d, `pgbackups_backups_total{result="success"}`); got != 1 {
		t.Errorf("success counter %v, want 1", got)
	}
	if got := counter(t, d, `pgbackups_backups_total{result="skipped"}`); got != 1 {
		t.Errorf("skipped counter %v, want 1 (looking at the lock is no skip)", got)
	}
	if code, body := getHealth(t, d.Handler()); code != 200 || body.LastSuccess == nil || body.LastSuccess.By != "this daemon" {
		t.Errorf("/healthz %d, last_success %+v", code, body.LastSuccess)
	}
	if !strings.Contains(logs.String(), "let go of the lock without a newer backup") {
		t.Errorf("the second attempt is not explained in the log:\n%s", logs)
	}
}

// TestSkippedRunHolderStoredLate: the holder's backup is listed just after
// the follower's last look, and the lock is free by its next: the follower
// looks at storage once more under the lock and takes no second backup.
func TestSkippedRunHolderStoredLate(t *testing.T) {
	fc := &failingCapture{}
	lock := &heldLock{heldFor: 1}
	tick := time.Now()
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture:  fc.capture,
		Lock:     lock,
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if lock.calls.Load() < 3 { // before the attempt under the lock
				return storage.Manifest{}, nil, storage.ErrNoBackups
			}
			return manifest("20260301-020000-hold", time.Now(), time.Second), nil, nil
		},
		FollowInterval: 20 * time.Millisecond,
	})
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.runScheduled(stop, context.Background(), tick)
	if fc.count() != 0 {
		t.Errorf("capture called %d times: a second backup of the run the holder took", fc.count())
	}
	if code, body := getHealth(t, d.Handler()); code != 200 || body.LastSuccess == nil || body.LastSuccess.ID != "20260301-020000-hold" {
		t.Errorf("/healthz %d, last_success %+v", code, body.LastSuccess)
	}
	if !strings.Contains(logs.String(), "the lock holder completed a backup") {
		t.Errorf("not logged:\n%s", logs)
	}
}

// TestRetryAfterAnotherReplicaBackedUp: this daemon's attempt fails, and
// while it waits to retry, a follower takes the free lock and completes
// the run's backup. The retry looks at storage under the lock and ends
// there, rather than take a second pg_dump of the same run.
func TestRetryAfterAnotherReplicaBackedUp(t *testing.T) {
	fc := &failingCapture{fails: 1}
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture:  fc.capture,
		Lock:     &heldLock{heldFor: -1}, // always free
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if fc.count() == 0 { // before this daemon's failed attempt
				return storage.Manifest{}, nil, storage.ErrNoBackups
			}
			return manifest("20260301-000000-othr", now(), 10*time.Millisecond), nil, nil
		},
		Retry: Retry{Max: 3, Backoff: 20 * time.Millisecond},
		Now:   now,
	})
	ctx := context.Background()
	d.runScheduled(ctx, ctx, tick)
	if n := fc.count(); n != 1 {
		t.Errorf("capture called %d times: the retry backed up a run another replica had completed\n%s", n, logs)
	}
	if s := d.state.lastSuccess(); s == nil || s.ID != "20260301-000000-othr" || s.By != "storage" {
		t.Errorf("last success %+v, want the other replica's backup", s)
	}
	if got := counter(t, d, `pgbackups_backups_total{result="success"}`); got != 0 {
		t.Errorf("success counter %v, want 0 (this daemon took no backup)", got)
	}
	if code, body := getHealth(t, d.Handler()); code != 200 {
		t.Errorf("/healthz %d %q (%s) after another replica completed the run", code, body.Status, body.Reason)
	}
}

// TestSkippedRunFollowLimits: the backup of the run before, which overran
// into this one, is not this run's; and a lock that comes free too late for
// a backup as long as the last is left to the next run.
func TestSkippedRunFollowLimits(t *testing.T) {
	tick := time.Now()
	// gocron starts a run a few milliseconds after its time.
	la := time.Date(2026, 3, 10, 10, 0, 0, 4e6, time.UTC)  // 03:00 PDT; the run before is 02:00
	utc3 := time.Date(2026, 3, 10, 3, 0, 0, 4e6, time.UTC) // 03:00, an hour after 02:00
	utc2 := time.Date(2026, 3, 10, 2, 0, 0, 4e6, time.UTC) // 02:00, 23 hours after 03:00
	for _, tc := range []struct {
		name, spec string
		tick       time.Time
		m          storage.Manifest
		counts     bool // the holder's backup is this run's
	}{
		// The daily run before's, a day long.
		{"overrun backup", "0 0 * * *", tick, manifest("20260301-010000-prev", tick.Add(time.Minute), 24*time.Hour), false},
		// Started 5 min before the tick: a capture that held the lock
		// across the run's time is this run's backup.
		{"manual capture just before", "0 0 * * *", tick, manifest("20260301-015500-hand", tick.Add(15*time.Minute), 20*time.Minute), true},
		// Hourly in a DST zone: Interval is 2h (the gap plus the
		// fall-back), so half of it reached exactly the run before's time,
		// and that run's backup, started just after it, counted.
		{"overrun backup, hourly in Los Angeles", "CRON_TZ=America/Los_Angeles 0 * * * *", la,
			manifest("20260310-090000-prev", la.Add(time.Minute), time.Hour+time.Minute-500*time.Millisecond), false},
		{"manual capture just before, hourly in Los Angeles", "CRON_TZ=America/Los_Angeles 0 * * * *", la,
			manifest("20260310-095500-hand", la.Add(15*time.Minute), 20*time.Minute), true},
		// Uneven times: the longest gap is 23h, this one 1h.
		{"overrun backup, 03:00 after 02:00", "02:00,03:00 UTC", utc3,
			manifest("20260310-020000-prev", utc3.Add(time.Minute), time.Hour+time.Minute-500*time.Millisecond), false},
		{"manual capture just before, 03:00 after 02:00", "02:00,03:00 UTC", utc3,
			manifest("20260310-025500-hand", utc3.Add(15*time.Minute), 20*time.Minute), true},
		{"overrun backup, 02:00 after 03:00", "02:00,03:00 UTC", utc2,
			manifest("20260309-030000-prev", utc2.Add(time.Minute), 23*time.Hour+time.Minute-500*time.Millisecond), false},
		{"manual capture just before, 02:00 after 03:00", "02:00,03:00 UTC", utc2,
			manifest("20260310-015500-hand", utc2.Add(15*time.Minute), 20*time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDaemon(t, Options{
				Schedule: mustParse(t, tc.spec), Capture: (&failingCapture{}).capture, Lock: &heldLock{},
				Latest:         func(context.Context) (storage.Manifest, *storage.Manifest, error) { return tc.m, nil, nil },
				FollowInterval: 20 * time.Millisecond,
				Now:            runningClock(tc.tick),
			})
			// A backup that counts ends the run at the first look (after
			// 20ms), so ten seconds only bound a hang; one that must not
			// count is looked at some fifteen times in 300ms, and is
			// taken at the first look if it is taken at all.
			timeout := 300 * time.Millisecond
			if tc.counts {
				timeout = 10 * time.Second
			}
			stop, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			d.runScheduled(stop, context.Background(), tc.tick)
			s := d.state.lastSuccess()
			if tc.counts && (s == nil || s.ID != tc.m.ID) {
				t.Errorf("last success %+v: %s, started %s, is this run's backup", s, tc.m.ID, tc.m.StartedAt.Format(time.RFC3339Nano))
			}
			if !tc.counts && s != nil {
				t.Errorf("last success %s, started %s: the run before's backup counted as this run's", s.ID, tc.m.StartedAt.Format(time.RFC3339Nano))
			}
		})
	}
	t.Run("too late", func(t *testing.T) {
		fc := &failingCapture{}
		d, logs := newDaemon(t, Options{
			Schedule: mustParse(t, "0 0 * * *"), Capture: fc.capture, Lock: &heldLock{heldFor: 1},
			Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
				return storage.Manifest{}, nil, storage.ErrNoBackups
			},
			FollowInterval: 20 * time.Millisecond,
		})
		d.recordSuccess(manifest("20260201-000000-long", tick.Add(-time.Hour), 48*time.Hour), "this daemon")
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.runScheduled(stop, context.Background(), tick)
		if fc.count() != 0 || !strings.Contains(logs.String(), "too late for this run") {
			t.Errorf("capture called %d times; log:\n%s", fc.count(), logs)
		}
	})
}

// counter reads one sample from /metrics.
func counter(t *testing.T, d *Daemon, series string) float64 {
	t.Helper()
	v, ok := scrape(t, d.Handler())[series]
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

// scrape returns /metrics' samples by series (name{labels}).
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return parseMetrics(t, rec.Body.String())
}

func parseMetrics(t *testing.T, text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetrics(t *testing.T) {
	finished := time.Date(2026, 3, 1, 2, 0, 30, 0, time.UTC)
	d, _ := newDaemon(t, Options{
		Schedule:     mustParse(t, "0 2 * * *"),
		Capture:      func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		LogicalLimit: 4000, // the manifest's database is 5000 bytes
		Blocking:     func() int { return 2 },
		RateLimit:    func() int64 { return 1 << 20 },
		Version:      "1.2.3",
		WebhookURL:   "https://hooks.example.com/services/T000/SECRET-TOKEN",
		// A minute after the success: healthy until the next run's.
		Now: func() time.Time { return finished.Add(time.Minute) },
	})
	d.recordSuccess(manifest("20260301-020000-aaaa", finished, 30*time.Second), "this daemon")
	d.progress.Store(12345)
	d.metrics.retentionDeleted.Add(3)
	m := scrape(t, d.Handler())
	for series, want := range map[string]float64{
		"pgbackups_last_success_timestamp_seconds":                              float64(finished.Unix()),
		"pgbackups_last_duration_seconds":                                       30,
		"pgbackups_last_dump_bytes":                                             1000,
		"pgbackups_last_stored_bytes":                                           300,
		"pgbackups_database_bytes":                                              5000,
		"pgbackups_database_over_logical_limit":                                 1,
		`pgbackups_backups_total{result="success"}`:                             0,
		`pgbackups_backups_total{result="failure"}`:                             0,
		`pgbackups_backups_total{result="skipped"}`:                             0,
		"pgbackups_backup_in_progress":                                          0,
		"pgbackups_current_backup_bytes":                                        12345,
		"pgbackups_retention_deleted_total":                                     3,
		"pgbackups_blocked_sessions":                                            2,
		"pgbackups_rate_limit_bytes_per_second":                                 1 << 20,
		"pgbackups_healthy":                                                     1,
		"pgbackups_blocking_aborts_total":                                       0,
		"pgbackups_last_failure_timestamp_seconds":                              0,
		"pgbackups_retention_errors_total":                                      0,
		`pgbackups_build_info{goversion="` + goVersion() + `",version="1.2.3"}`: 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go collector metrics")
	}
	if got, want := m["pgbackups_next_run_timestamp_seconds"], float64(time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC).Unix()); got != want {
		t.Errorf("pgbackups_next_run_timestamp_seconds %v, want %v (the next 02:00)", got, want)
	}
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "SECRET-TOKEN") || strings.Contains(rec.Body.String(), "hooks.example.com") {
		t.Error("/metrics shows the webhook URL")
	}
}

// TestRunShutdown drives Run with a schedule every second and a capture
// that runs until told to stop, and cancels Run mid-backup.
func TestRunShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		grace     time.Duration
		wantAbort bool // else the capture is released right after the signal
	}{
		{"finishes within grace", 3 * time.Second, false},
		{"aborted after grace", 300 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			// The capture runs until the test releases it, so the mid-backup
			// checks never race its end, and no second tick can start one.
			release := make(chan struct{})
			var captureErr atomic.Pointer[error]
			capture := func(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error) {
				select {
				case started <- struct{}{}:
				default:
				}
				progress.Store(777)
				select {
				case <-ctx.Done():
					err := fmt.Errorf("s3: upload aborted: %w", context.Cause(ctx))
					captureErr.Store(&err)
					return storage.Manifest{}, err
				case <-release:
					now := time.Now()
					return manifest(storage.NewID(now), now, time.Second), nil
				}
			}
			var notified []string
			var mu sync.Mutex
			d, logs := newDaemon(t, Options{
				Schedule:         mustParse(t, "* * * * * *"),
				Capture:          capture,
				HTTPAddr:         "127.0.0.1:0",
				ShutdownGrace:    tc.grace,
				ProgressInterval: 50 * time.Millisecond,
				Notify: func(states ...string) error {
					mu.Lock()
					defer mu.Unlock()
					notified = append(notified, states...)
					return nil
				},
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			select {
			case <-started:
			case err := <-done:
				t.Fatalf("Run returned %v before a backup started\n%s", err, logs)
			case <-time.After(5 * time.Second):
				t.Fatalf("no backup started in 5s\n%s", logs)
			}
			// Let the capture count its bytes and progress be logged.
			var m map[string]float64
			if !within(10*time.Second, func() bool {
				m = scrape(t, d.Handler())
				return m["pgbackups_current_backup_bytes"] == 777 && strings.Contains(logs.String(), "backup in progress")
			}) {
				t.Errorf("no progress line, or no bytes counted, 10s into the backup\n%s", logs)
			}
			if m["pgbackups_backup_in_progress"] != 1 || m["pgbackups_current_backup_bytes"] != 777 {
				t.Errorf("mid-backup metrics: in_progress %v, bytes %v", m["pgbackups_backup_in_progress"], m["pgbackups_current_backup_bytes"])
			}
			if _, body := getHealth(t, d.Handler()); body.Running == nil || body.Running.Bytes != 777 {
				t.Errorf("mid-backup /healthz running = %+v", body.Running)
			}
			stopAt := time.Now()
			cancel()
			if !tc.wantAbort {
				// The backup ends only once the shutdown waits for it.
				if !within(10*time.Second, func() bool {
					return strings.Contains(logs.String(), "waiting for the scheduled run in progress to finish")
				}) {
					t.Errorf("the shutdown does not wait for the backup in progress\n%s", logs)
				}
				close(release)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(tc.grace + 5*time.Second):
				t.Fatalf("Run did not return\n%s", logs)
			}
			took := time.Since(stopAt)
			aborted := captureErr.Load() != nil
			if aborted != tc.wantAbort {
				t.Fatalf("capture aborted: %v, want %v\n%s", aborted, tc.wantAbort, logs)
			}
			if tc.wantAbort {
				if !strings.Contains((*captureErr.Load()).Error(), "PGBACKUPS_SHUTDOWN_GRACE") {
					t.Errorf("the capture's context cause does not name the grace: %v", *captureErr.Load())
				}
				// The operator's stop, which the failed manifest records.
				if !errors.Is(*captureErr.Load(), dump.ErrStopped) {
					t.Errorf("the capture's context cause %v is not dump.ErrStopped", *captureErr.Load())
				}
				if took < tc.grace {
					t.Errorf("aborted after %s, before the grace %s", took, tc.grace)
				}
				// The operator's doing, not a page; and the daemon has no
				// next run to name.
				failed := 0
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, `msg="backup failed"`) {
						failed++
						if !strings.Contains(l, "level=WARN") || strings.Contains(l, "next_run") {
							t.Errorf("the backup stopped at shutdown is logged as %s", l)
						}
					}
				}
				if failed != 1 {
					t.Errorf("%d lines say the backup failed, want 1\n%s", failed, logs)
				}
			} else if got := counter(t, d, `pgbackups_backups_total{result="success"}`); got != 1 {
				t.Errorf("success counter %v: the in-flight backup did not complete\n%s", got, logs)
			}
			if !strings.Contains(logs.String(), "backup in progress") {
				t.Errorf("no progress line:\n%s", logs)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(notified) < 2 || notified[0] != "READY=1" || !contains(notified, "STOPPING=1") {
				t.Errorf("sd_notify states %q", notified)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRunWithoutScheduleServesHealth(t *testing.T) {
	d, logs := newDaemon(t, Options{HTTPAddr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	base := "http://" + servingAddr(t, logs)
	resp := waitHTTP(t, base+"/healthz")
	var body Health
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body.Status != StatusOK {
		t.Errorf("/healthz %d %+v", resp.StatusCode, body)
	}
	if r, err := http.Get(base + "/nope"); err != nil || r.StatusCode != 404 {
		t.Errorf("unknown path: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "PGBACKUPS_SCHEDULE is unset") {
		t.Errorf("start-up does not say no backups run:\n%s", logs)
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, _ := newDaemon(t, Options{HTTPAddr: ln.Addr().String()})
	err = d.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "http: ") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Run on a used port: %v", err)
	}
}

// servingAddr waits for the log line of a daemon's Run saying where it
// serves, and returns that address: a daemon given 127.0.0.1:0 listens on
// a port of the kernel's choosing, which no other process can take first.
func servingAddr(t *testing.T, logs *logBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`msg="serving /healthz, /livez and /metrics".* addr=(\S+)`)
	var addr string
	if !within(10*time.Second, func() bool {
		m := re.FindStringSubmatch(logs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}) {
		t.Fatalf("the daemon did not say where it serves in 10s\n%s", logs)
	}
	return addr
}

// freePort is testenv.FreePort for a test that needs the port before the
// daemon listens (prefer 127.0.0.1:0 and servingAddr).
func freePort(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(port)
}

// within polls cond every 10ms until it holds or d has passed, and reports
// whether it held.
func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// background runs f in a goroutine. The returned ended fails the test,
// saying stuck, when f has not returned within d.
func background(t *testing.T, f func()) (ended func(d time.Duration, stuck string)) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	return func(d time.Duration, stuck string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(d):
			t.Fatal(stuck)
		}
	}
}

// startRun runs d until the test ends, then checks Run's error; it
// returns once the daemon says it started.
func startRun(t *testing.T, d *Daemon, logs *logBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitLogged(t, logs, "daemon started")
}

// waitLogged waits up to 5 s for what to appear in logs.
func waitLogged(t *testing.T, logs *logBuffer, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), what); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not logged within 5s: %q\n%s", what, logs)
		}
	}
}

func waitHTTP(t *testing.T, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNotifications runs the daemon against a webhook and a ping endpoint:
// a success, then a failure. Neither URL's token may reach the logs.
func TestNotifications(t *testing.T) {
	type hit struct {
		method, path string
		body         []byte
	}
	hits := make(chan hit, 64)
	var webhookCalls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/hook/") && webhookCalls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway) // retried
			return
		}
		hits <- hit{r.Method, r.URL.Path, b}
	}))
	defer srv.Close()

	fc := &failingCapture{}
	var calls atomic.Int32
	capture := func(ctx context.Context, p *atomic.Int64) (storage.Manifest, error) {
		if calls.Add(1) == 2 {
			return storage.Manifest{}, errors.New("pre-flight: connect to database \"app\": connection refused")
		}
		return fc.capture(ctx, p)
	}
	d, logs := newDaemon(t, Options{
		Schedule:   mustParse(t, "* * * * * *"),
		Capture:    capture,
		WebhookURL: srv.URL + "/hook/T0KEN-WEBHOOK",
		PingURL:    srv.URL + "/ping/T0KEN-PING",
	})
	d.webhook.pause = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	var pings []string
	var events []Event
	timeout := time.After(30 * time.Second) // two runs a second apart: about two seconds
	for len(events) < 2 || len(pings) < 4 {
		select {
		case h := <-hits:
			switch {
			case strings.HasPrefix(h.path, "/ping/"):
				if h.method != "GET" {
					t.Errorf("ping %s %s", h.method, h.path)
				}
				pings = append(pings, strings.TrimPrefix(h.path, "/ping/T0KEN-PING"))
			case strings.HasPrefix(h.path, "/hook/"):
				var ev Event
				if err := json.Unmarshal(h.body, &ev); err != nil || h.method != "POST" {
					t.Fatalf("webhook %s %s: %v", h.method, h.body, err)
				}
				events = append(events, ev)
			}
		case <-timeout:
			t.Fatalf("got pings %q and %d events in 30s\n%s", pings, len(events), logs)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Two scheduled runs: start, success, then (the second capture fails
	// before the lock-free "start") start, fail.
	if want := []string{"/start", "", "/start", "/fail"}; strings.Join(pings[:4], ",") != strings.Join(want, ",") {
		t.Errorf("pings %q, want %q", pings, want)
	}
	if events[0].Event != EventSucceeded || events[0].BackupID == "" || events[0].DumpBytes != 1000 || events[0].Attempt != 1 {
		t.Errorf("first event %+v", events[0])
	}
	if events[1].Event != EventFailed || !strings.Contains(events[1].Error, "connection refused") || events[1].WillRetry {
		t.Errorf("second event %+v", events[1])
	}
	if webhookCalls.Load() < 3 {
		t.Errorf("webhook called %d times: the 502 was not retried", webhookCalls.Load())
	}
	out := logs.String()
	if strings.Contains(out, "T0KEN") {
		t.Errorf("a notification URL's token is in the logs:\n%s", out)
	}
	if !strings.Contains(out, strings.TrimPrefix(srv.URL, "http://")) {
		t.Errorf("logs do not name the endpoint's host:\n%s", out)
	}
}

// TestNotificationsNeverBlock: an endpoint that hangs does not delay
// backups, and shutdown waits for it only a bounded time.
func TestNotificationsNeverBlock(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	fc := &failingCapture{}
	d, _ := newDaemon(t, Options{
		Schedule:   mustParse(t, "0 0 * * *"),
		Capture:    fc.capture,
		WebhookURL: srv.URL + "/hook",
		PingURL:    srv.URL + "/ping",
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { d.webhook.run(ctx) })
	wg.Go(func() { d.pinger.run(ctx) })
	start := time.Now()
	for range 5 {
		d.runScheduled(ctx, ctx, d.now())
	}
	// A backup that waited for the endpoint would wait for it to time out
	// (notifyTimeout); half of that for all five leaves a loaded machine
	// time enough.
	if took := time.Since(start); took > notifyTimeout/2 {
		t.Errorf("5 backups took %s with a hanging webhook", took)
	}
	if fc.count() != 5 {
		t.Errorf("%d backups, want 5", fc.count())
	}
}

// TestAdvisoryLock takes the lock twice on a real server: the second try
// is refused and names the holder's pid, and succeeds once it is released.
func TestAdvisoryLock(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	conn := mustConn(t, pg.URL(db))
	ctx := context.Background()
	key := LockKey("s3://bucket/prefix", db)
	if key == LockKey("s3://bucket/other", db) || key != LockKey("s3://bucket/prefix/", db) {
		t.Fatal("LockKey does not tell locations apart, or minds a trailing slash")
	}
	a, b := AdvisoryLock{Conn: conn, Key: key}, AdvisoryLock{Conn: conn, Key: key}
	if free, err := b.Free(ctx); err != nil || !free {
		t.Fatalf("Free before anyone holds it = %v, %v", free, err)
	}
	release, err := a.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if free, err := b.Free(ctx); err != nil || free {
		t.Fatalf("Free while held = %v, %v", free, err)
	}
	if free, err := (AdvisoryLock{Conn: conn, Key: LockKey("s3://bucket/other", db)}).Free(ctx); err != nil || !free {
		t.Fatalf("Free of another key while this one is held = %v, %v", free, err)
	}
	holder := pg.QueryString(t, db, fmt.Sprintf(
		"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %d", uint32(uint64(key))))
	_, err = b.TryLock(ctx)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second TryLock: %v, want *HeldError", err)
	}
	host, _ := os.Hostname()
	// A long host name (a CI runner's, a Kubernetes pod's) keeps its end:
	// see TestLockAppName.
	wantApp := lockAppName(host)
	if fmt.Sprint(held.PID) != holder || held.Application != wantApp {
		t.Errorf("held by %+v, want pid %s (application %s)", held, holder, wantApp)
	}
	if !strings.Contains(err.Error(), "pid "+holder) {
		t.Errorf("error %q does not name pid %s", err, holder)
	}
	// Another storage location is another lock.
	other, err := AdvisoryLock{Conn: conn, Key: LockKey("s3://bucket/other", db)}.TryLock(ctx)
	if err != nil {
		t.Fatalf("a different key is blocked: %v", err)
	}
	other()
	release()
	if free, err := b.Free(ctx); err != nil || !free {
		t.Fatalf("Free after release = %v, %v", free, err)
	}
	release2, err := b.TryLock(ctx)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	release2()

	// An unreachable server is a failure naming the database, not a skip,
	// and never shows the password.
	bad := mustConn(t, strings.Replace(pg.URL(db), fmt.Sprintf(":%d/", pg.Port), ":1/", 1))
	_, err = AdvisoryLock{Conn: bad, Key: key}.TryLock(ctx)
	if err == nil || errors.As(err, &held) || !strings.HasPrefix(err.Error(), "connect to") || !strings.HasSuffix(err.Error(), "(taking the backup lock)") || strings.Contains(err.Error(), pg.Password) {
		t.Errorf("unreachable server: %v", err)
	}
}

func mustConn(t *testing.T, raw string) dump.Conn {
	t.Helper()
	c, err := dump.ParseConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func goVersion() string { return runtime.Version() }

// TestAdvisoryLockLost: when the session holding the lock ends, the held
// context is cancelled with ErrLockLost, so the backup stops rather than run
// beside another replica's.
func TestAdvisoryLockLost(t *testing.T) {
	old := lockCheckInterval
	lockCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { lockCheckInterval = old })
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	conn, err := dump.ParseConn(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := AdvisoryLock{Conn: conn, Key: LockKey("/srv/lost", db)}
	held, release, err := l.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	time.Sleep(300 * time.Millisecond)
	if held.Err() != nil {
		t.Fatalf("lock reported lost while held: %v", context.Cause(held))
	}
	// An operator (or idle_session_timeout) ends the holding session.
	pg.Exec(t, db, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), ErrLockLost) {
			t.Fatalf("cause %v, want ErrLockLost", context.Cause(held))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lost lock not noticed")
	}
	// Another pgbackups can now take it.
	_, release2, err := l.Hold(ctx)
	if err != nil {
		t.Fatalf("lock not free after its session ended: %v", err)
	}
	release2()
}

// TestRetentionIsBounded: retention runs under the backup lock after a
// success; a storage endpoint that stops answering there must not hold the
// lock, and the run, for ever (gocron would drop every later run, /livez
// would stay 200). It gives up after RetentionTimeout, the backup stands,
// and the failure is logged and counted.
func TestRetentionIsBounded(t *testing.T) {
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			return manifest("20260301-000000-good", now(), 10*time.Millisecond), nil
		},
		Prune: func(ctx context.Context) (int, int, error) {
			<-ctx.Done() // a List that never answers
			return 0, 0, ctx.Err()
		},
		RetentionTimeout: 100 * time.Millisecond,
		Lock:             &heldLock{heldFor: -1},
		Now:              now,
	})
	done := make(chan struct{})
	go func() {
		ctx := context.Background()
		d.runScheduled(ctx, ctx, tick)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the run is still in retention 20 s later (RetentionTimeout 100ms)")
	}
	if s := d.state.lastSuccess(); s == nil || s.ID != "20260301-000000-good" {
		t.Errorf("last success %+v, want the backup", s)
	}
	if got := counter(t, d, "pgbackups_retention_errors_total"); got != 1 {
		t.Errorf("retention errors %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "retention took longer than 100ms (PGBACKUPS_STALL_TIMEOUT)") {
		t.Errorf("the log does not say why retention stopped:\n%s", logs)
	}
}

// TestLockAppName: the lock session's application_name fits the server's
// 63 bytes, and a host name too long for it keeps its end (a pod's hashes).
func TestLockAppName(t *testing.T) {
	long := "payments-api-backups-production-eu-west-1" + "-7f9c6d5b8-x2k4q" // 57 bytes
	for _, tc := range []struct{ host, want string }{
		{"db1", "pgbackups@db1"},
		{strings.Repeat("h", 53), "pgbackups@" + strings.Repeat("h", 53)},
		{long, "pgbackups@.." + long[len(long)-51:]}, // 12 + 51 = 63 bytes
	} {
		got := lockAppName(tc.host)
		if got != tc.want || len(got) > 63 {
			t.Errorf("lockAppName(%q) = %q (%d bytes), want %q", tc.host, got, len(got), tc.want)
		}
	}
	if got := lockAppName(long); !strings.HasSuffix(got, "-7f9c6d5b8-x2k4q") {
		t.Errorf("lockAppName(%q) = %q lost the pod's hashes", long, got)
	}
}

// TestRunAfterSleepStartsByTheWallClock: a daemon whose host slept past a
// run (or whose clock was set forward past it) starts it as soon as it
// sees the wall clock there, late and said to be, not after the time
// gocron's timer still had to count on the monotonic clock; a sleep across
// several runs gives one, and says the others were missed. /livez does not
// call the scheduler stuck.
func TestRunAfterSleepStartsByTheWallClock(t *testing.T) {
	woke := time.Date(2026, 3, 10, 5, 15, 0, 0, time.UTC)
	tests := []struct {
		schedule string
		logged   []string
		next     time.Time
	}{
		{"02:00 UTC", []string{`msg="scheduled run started late: the process was paused, or the clock jumped" component=daemon due=2026-03-10T02:00:00Z late_by=3h15m0s`},
			time.Date(2026, 3, 11, 2, 0, 0, 0, time.UTC)},
		{"0 * * * *", []string{
			`msg="scheduled runs were missed: the previous run was still going, or the process was paused" component=daemon first_missed=2026-03-10T02:00:00Z now_running=2026-03-10T05:00:00Z`,
			`msg="scheduled run started late: the process was paused, or the clock jumped" component=daemon due=2026-03-10T05:00:00Z late_by=15m0s`,
		}, time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.schedule, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 3, 10, 1, 0, 30, 0, time.UTC)}
			var captures atomic.Int32
			ran := make(chan time.Time, 1)
			d, logs := newDaemon(t, Options{
				Schedule: mustParse(t, tc.schedule),
				Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
					captures.Add(1)
					ran <- clock.Now()
					return manifest("20260310-051500-woke", clock.Now(), time.Second), nil
				},
				HealthGrace: time.Hour,
				Now:         clock.Now,
			})
			d.wallPoll = 10 * time.Millisecond
			startRun(t, d, logs)
			clock.Set(woke) // the host wakes up, hours after the run
			select {
			case at := <-ran:
				if !at.Equal(woke) {
					t.Errorf("backed up at %v, want %v", at, woke)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the run the host slept through did not start once it woke:\n%s", logs)
			}
			for deadline := time.Now().Add(5 * time.Second); d.state.lastSuccess() == nil; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the backup did not end:\n%s", logs)
				}
			}
			time.Sleep(100 * time.Millisecond)
			if n := captures.Load(); n != 1 {
				t.Errorf("%d backups after the sleep, want 1", n)
			}
			for _, l := range tc.logged {
				if !strings.Contains(logs.String(), l) {
					t.Errorf("not logged: %s\n%s", l, logs)
				}
			}
			rec := httptest.NewRecorder()
			d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/livez", nil))
			if rec.Code != 200 {
				t.Errorf("/livez after the late run: %d %s", rec.Code, rec.Body)
			}
			d.mu.Lock()
			next := d.nextRun
			d.mu.Unlock()
			if !next.Equal(tc.next) {
				t.Errorf("next run expected at %v, want %v", next, tc.next)
			}
		})
	}
}

// failingListener is a listener whose Accept fails for good once fail is
// closed, as a listener's does when its socket breaks.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l failingListener) Accept() (net.Conn, error) {
	<-l.fail
	return nil, errors.New("accept: the socket broke")
}

// TestHTTPFailureStopsWaitingRuns: when the HTTP server fails, Run stops
// at once, with the server's error, though a scheduled run is pausing an
// hour before its retry: the pause ends with the daemon, not after it.
func TestHTTPFailureStopsWaitingRuns(t *testing.T) {
	due := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: due.Add(-time.Minute)}
	var attempts atomic.Int32
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			attempts.Add(1)
			clock.Set(due.Add(time.Minute))
			return storage.Manifest{}, errors.New("the database is down")
		},
		Retry:         Retry{Max: 3, Backoff: time.Hour},
		HTTPAddr:      "127.0.0.1:0",
		ShutdownGrace: time.Second,
		Now:           clock.Now,
	})
	d.wallPoll = 10 * time.Millisecond
	fail := make(chan struct{})
	d.listen = func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		return failingListener{ln, fail}, err
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	waitLogged(t, logs, "daemon started")
	clock.Set(due)
	waitLogged(t, logs, "backup failed; retrying")
	close(fail)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http: accept: the socket broke") {
			t.Errorf("Run = %v, want the HTTP server's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run still going 10s after the HTTP server failed, with a retry an hour away:\n%s", logs)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// failsFirst is a Capture whose first backup fails and later ones
// complete at clock's time, counting calls in n.
func failsFirst(clock *fakeClock, n *atomic.Int32) func(context.Context, *atomic.Int64) (storage.Manifest, error) {
	return func(context.Context, *atomic.Int64) (storage.Manifest, error) {
		if n.Add(1) == 1 {
			return storage.Manifest{}, errors.New("the database is down")
		}
		return manifest("20260311-050000-woke", clock.Now(), time.Second), nil
	}
}

// storedBefore is a Latest that finds the backup of the day before.
func storedBefore(context.Context) (storage.Manifest, *storage.Manifest, error) {
	return manifest("20260309-020000-prev", time.Date(2026, 3, 9, 2, 1, 0, 0, time.UTC), time.Minute), nil, nil
}

// TestRunAfterSleepWhileWaiting: the host sleeps (or the clock is set
// forward) past the next run while the job of the one before is still
// waiting: watching storage after giving up, or pausing before a retry.
// Those waits end by the wall clock, and the run slept through is run
// once, late, by the job itself if gocron dropped it (its timer firing
// while the job still ran) and by gocron otherwise, never twice.
func TestRunAfterSleepWhileWaiting(t *testing.T) {
	tests := []struct {
		name  string
		retry Retry
	}{
		{"watching storage after giving up", Retry{Max: 0}},
		{"pausing before a retry", Retry{Max: 3, Backoff: 6 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 3, 10, 1, 0, 30, 0, time.UTC)}
			var captures atomic.Int32
			d, logs := newDaemon(t, Options{
				Schedule:       mustParse(t, "02:00 UTC"),
				Capture:        failsFirst(clock, &captures),
				Latest:         storedBefore,
				Retry:          tc.retry,
				FollowInterval: 500 * time.Millisecond,
				HealthGrace:    time.Hour,
				Now:            clock.Now,
			})
			d.wallPoll = 10 * time.Millisecond
			startRun(t, d, logs)
			clock.Set(time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC))
			waitLogged(t, logs, "backup failed")
			time.Sleep(100 * time.Millisecond)                      // the job waits
			clock.Set(time.Date(2026, 3, 11, 5, 0, 0, 0, time.UTC)) // slept past the 03-11 02:00 run
			for deadline := time.Now().Add(5 * time.Second); d.state.lastSuccess() == nil; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the run the host slept through did not back up once it woke (%d captures):\n%s", captures.Load(), logs)
				}
			}
			time.Sleep(300 * time.Millisecond) // gocron's own start of it, if still to come
			if n := captures.Load(); n != 2 {
				t.Errorf("%d captures, want 2: the failed run and the one slept through, once\n%s", n, logs)
			}
			for _, l := range []string{"scheduled run started early", "backup failed; retrying"} {
				if strings.Contains(logs.String(), l) && (l != "backup failed; retrying" || tc.retry.Max == 0) {
					t.Errorf("logged %q:\n%s", l, logs)
				}
			}
			waitLogged(t, logs, `msg="scheduled run started late: the process was paused, or the clock jumped" component=daemon due=2026-03-11T02:00:00Z late_by=3h0m0s`)
			d.mu.Lock()
			next := d.nextRun
			d.mu.Unlock()
			if want := time.Date(2026, 3, 12, 2, 0, 0, 0, time.UTC); !next.Equal(want) {
				t.Errorf("next run expected at %v, want %v", next, want)
			}
		})
	}
}

// TestScheduledRunsTheRunDueWhileWaiting drives the job itself, without
// gocron: when the next run's time passes while the job waits (the host
// slept), the job runs it before it ends, as gocron dropped it; gocron's
// own start of that run, should its timer fire afterwards, does nothing.
func TestScheduledRunsTheRunDueWhileWaiting(t *testing.T) {
	first := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: first}
	var captures atomic.Int32
	d, logs := newDaemon(t, Options{
		Schedule:       mustParse(t, "02:00 UTC"),
		Capture:        failsFirst(clock, &captures),
		Latest:         storedBefore,
		FollowInterval: 20 * time.Millisecond,
		Now:            clock.Now,
	})
	d.wallPoll = 10 * time.Millisecond
	d.nextRun = first
	ctx := context.Background()
	ended := background(t, func() { d.scheduled(ctx, ctx) })
	waitLogged(t, logs, "backup failed")
	clock.Set(time.Date(2026, 3, 11, 5, 0, 0, 0, time.UTC)) // slept past the 03-11 02:00 run
	ended(5*time.Second, "the job did not end after the run it owed")
	if n := captures.Load(); n != 2 {
		t.Errorf("%d captures, want 2: the failed run and the one slept through\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "the next scheduled run came due while this run waited") {
		t.Errorf("the run owed is not said:\n%s", logs)
	}
	// gocron's timer for the 03-11 run, firing after the job ended.
	ended = background(t, func() { d.scheduled(ctx, ctx) })
	ended(5*time.Second, "gocron's late start of a run already run did not end at once")
	if n := captures.Load(); n != 2 {
		t.Errorf("%d captures after gocron's late start of the run already run, want 2\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "started early") {
		t.Errorf("gocron's late start of the run already run was taken for an early one:\n%s", logs)
	}
	// The day after, gocron's run is on time, and runs.
	clock.Set(time.Date(2026, 3, 12, 2, 0, 0, 0, time.UTC))
	ended = background(t, func() { d.scheduled(ctx, ctx) })
	ended(5*time.Second, "the next day's run did not end")
	if n := captures.Load(); n != 3 {
		t.Errorf("%d captures after the next day's run, want 3\n%s", n, logs)
	}
}

// TestFailedOverrunDropsTheNextRun: an attempt that itself runs past the
// next run's time and fails drops that run, as a successful one does; the
// job does not take it for a run slept through and back up again at once.
func TestFailedOverrunDropsTheNextRun(t *testing.T) {
	first := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: first}
	var captures atomic.Int32
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 * * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			if captures.Add(1) == 1 {
				clock.Set(first.Add(65 * time.Minute)) // it ran 65 minutes, then failed
				return storage.Manifest{}, errors.New("stalled")
			}
			return manifest("20260310-030500-late", clock.Now(), time.Second), nil
		},
		Latest:         storedBefore,
		Retry:          Retry{Max: 3, Backoff: time.Minute},
		FollowInterval: 20 * time.Millisecond,
		Now:            clock.Now,
	})
	d.wallPoll = 10 * time.Millisecond
	d.nextRun = first
	ctx := context.Background()
	ended := background(t, func() { d.scheduled(ctx, ctx) })
	ended(5*time.Second, "the job did not end after the failed attempt")
	if n := captures.Load(); n != 1 {
		t.Errorf("%d captures, want 1: the 03:00 run is dropped, not run late\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "came due while this run waited") {
		t.Errorf("an attempt's overrun was taken for a wait's:\n%s", logs)
	}
}

// TestFollowEveryFitsTheSchedule: a watch after a skipped run looks at
// storage at least four times between runs; with a 30 s look a schedule
// of a minute or less left a replica that lost the lock never seeing the
// other's backup.
func TestFollowEveryFitsTheSchedule(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		follow time.Duration
		want   time.Duration
	}{
		{"0 * * * *", 0, 30 * time.Second},
		{"* * * * *", 0, 15 * time.Second},
		{"*/20 * * * * *", 0, 5 * time.Second},
		{"* * * * * *", 0, time.Second},
		{"* * * * *", 20 * time.Millisecond, 20 * time.Millisecond},
	} {
		d, _ := newDaemon(t, Options{Schedule: mustParse(t, tc.spec), Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
			FollowInterval: tc.follow})
		if got := d.followEvery(); got != tc.want {
			t.Errorf("%s with FollowInterval %s: looks every %s, want %s", tc.spec, tc.follow, got, tc.want)
		}
	}
}
