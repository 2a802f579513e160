package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestConsecutiveFailures: an alert on "N failures in a row" needs the
// count, retries included, reset by a success (this daemon's or one read
// from storage), and not lost across a restart when storage's newest
// backup failed.
func TestConsecutiveFailures(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	fc := &failingCapture{fails: 3}
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  fc.capture,
		Retry:    Retry{Max: 1, Backoff: time.Millisecond},
		Now:      now,
	})
	ctx := context.Background()
	check := func(when string, want int) {
		t.Helper()
		if got := scrape(t, d.Handler())["pgbackups_consecutive_failures"]; got != float64(want) {
			t.Errorf("%s: pgbackups_consecutive_failures %v, want %d", when, got, want)
		}
		if _, h := getHealth(t, d.Handler()); h.ConsecutiveFailures != want {
			t.Errorf("%s: /healthz consecutive_failures %d, want %d", when, h.ConsecutiveFailures, want)
		}
	}
	check("at start", 0)
	d.runScheduled(ctx, ctx, tick) // an attempt and its retry fail
	check("after a run that failed twice", 2)
	d.runScheduled(ctx, ctx, tick) // fails, then its retry succeeds
	check("after a success", 0)

	// A restart: storage's newest backup failed after the last success.
	ok := manifest("20260301-020000-good", tick.Add(time.Minute), time.Minute)
	failed := storage.Manifest{ID: "20260302-020000-fail", Status: storage.StatusFailed, Error: "pg_dump: exit status 1",
		StartedAt: tick.Add(24 * time.Hour), FinishedAt: tick.Add(24*time.Hour + time.Minute)}
	d2, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  fc.capture,
		Latest:   func(context.Context) (storage.Manifest, *storage.Manifest, error) { return ok, &failed, nil },
		Now:      func() time.Time { return failed.FinishedAt.Add(time.Minute) },
	})
	d2.loadLatest(ctx)
	if got := scrape(t, d2.Handler())["pgbackups_consecutive_failures"]; got != 1 {
		t.Errorf("after a restart reading a failure after the last success: %v, want 1", got)
	}
	// The holder of the lock (another replica) stores a success: reset.
	d2.recordSuccess(manifest("20260302-030000-next", failed.FinishedAt.Add(time.Hour), time.Minute), "storage")
	if got := scrape(t, d2.Handler())["pgbackups_consecutive_failures"]; got != 0 {
		t.Errorf("after a newer success from storage: %v, want 0", got)
	}
}

// TestRetentionPassObserved: a retention pass that lists storage (finding
// nothing unreadable) and then fails to delete keeps the old
// pgbackups_retention_left_alone (it cannot tell a pass that never listed
// from one that did), so that value must not pass for current: the pass's
// end and outcome are exported, and /healthz says what the last pass did.
// Seen for real: a backup folder made undeletable after the unreadable
// one was removed left the gauge at 1 with nothing saying it was old.
func TestRetentionPassObserved(t *testing.T) {
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	clock := &fakeClock{t: tick}
	type pass struct {
		removed, alone int
		err            error
	}
	var next atomic.Pointer[pass]
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			return manifest(storage.NewID(clock.Now()), clock.Now(), 10*time.Millisecond), nil
		},
		Prune: func(context.Context) (int, int, error) {
			p := next.Load()
			return p.removed, p.alone, p.err
		},
		Now: clock.Now,
	})
	ctx := context.Background()

	// 1: a complete pass leaves two alone.
	t1 := tick.Add(time.Second)
	clock.Set(t1)
	next.Store(&pass{removed: 1, alone: 2})
	d.runScheduled(ctx, ctx, tick)
	m := scrape(t, d.Handler())
	if m["pgbackups_retention_last_success_timestamp_seconds"] != unix(t1) || m["pgbackups_retention_last_failure_timestamp_seconds"] != 0 {
		t.Errorf("after a complete pass: success %v, failure %v, want %v and 0", m["pgbackups_retention_last_success_timestamp_seconds"], m["pgbackups_retention_last_failure_timestamp_seconds"], unix(t1))
	}
	_, h := getHealth(t, d.Handler())
	if r := h.LastRetention; r == nil || !r.At.Equal(t1) || r.Removed != 1 || r.LeftAlone == nil || *r.LeftAlone != 2 || r.Error != "" {
		t.Errorf("/healthz last_retention after a complete pass: %+v", r)
	}

	// 2: a pass that fails with nothing found unreadable: the gauge keeps
	// its count, and the timestamps say it is older than the last pass.
	t2 := tick.Add(24 * time.Hour)
	clock.Set(t2)
	next.Store(&pass{err: errors.New("prune 20260301-000000-aaaa: delete: access denied")})
	d.runScheduled(ctx, ctx, t2)
	m = scrape(t, d.Handler())
	if m["pgbackups_retention_left_alone"] != 2 {
		t.Errorf("left alone %v, want the last count, 2", m["pgbackups_retention_left_alone"])
	}
	if m["pgbackups_retention_last_failure_timestamp_seconds"] != unix(t2) || m["pgbackups_retention_last_success_timestamp_seconds"] != unix(t1) {
		t.Errorf("after a failed pass: success %v, failure %v, want %v and %v", m["pgbackups_retention_last_success_timestamp_seconds"], m["pgbackups_retention_last_failure_timestamp_seconds"], unix(t1), unix(t2))
	}
	_, h = getHealth(t, d.Handler())
	if r := h.LastRetention; r == nil || !r.At.Equal(t2) || r.LeftAlone != nil || !strings.Contains(r.Error, "access denied") {
		t.Errorf("/healthz last_retention after a failed pass: %+v (want no left_alone: unknown)", r)
	}
	if h.Status != StatusOK {
		t.Errorf("/healthz %s after a failed retention: the backup succeeded", h.Status)
	}

	// 3: a pass that fails after listing one unreadable backup counts it.
	t3 := tick.Add(48 * time.Hour)
	clock.Set(t3)
	next.Store(&pass{alone: 1, err: errors.New("prune: list unfinished writes: not implemented")})
	d.runScheduled(ctx, ctx, t3)
	if got := scrape(t, d.Handler())["pgbackups_retention_left_alone"]; got != 1 {
		t.Errorf("left alone %v, want 1", got)
	}
	if _, h := getHealth(t, d.Handler()); h.LastRetention == nil || h.LastRetention.LeftAlone == nil || *h.LastRetention.LeftAlone != 1 {
		t.Errorf("/healthz last_retention: %+v", h.LastRetention)
	}
}

// TestRetentionTimeoutNamed: a pass cut off by RetentionTimeout says so in
// /healthz, not just "context deadline exceeded".
func TestRetentionTimeoutNamed(t *testing.T) {
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			return manifest("20260301-000000-good", tick, 10*time.Millisecond), nil
		},
		Prune: func(ctx context.Context) (int, int, error) {
			<-ctx.Done()
			return 0, 0, fmt.Errorf("s3: list: %w", ctx.Err())
		},
		RetentionTimeout: 20 * time.Millisecond,
		Now:              runningClock(tick),
	})
	ctx := context.Background()
	d.runScheduled(ctx, ctx, tick)
	if _, h := getHealth(t, d.Handler()); h.LastRetention == nil || !strings.Contains(h.LastRetention.Error, "PGBACKUPS_STALL_TIMEOUT") {
		t.Errorf("/healthz last_retention: %+v", h.LastRetention)
	}
}

// TestStorageUnreadableAtStartup: a daemon that cannot read storage at
// start-up does not know its last success; /healthz must not present that
// as "no backup yet" (last_success null, nothing else), since the overdue
// clock then counts from start-up and hides a stale last success. Seen for
// real with the S3 server stopped: 200 ok, last_success null, no word.
func TestStorageUnreadableAtStartup(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var fail atomic.Bool
	fail.Store(true)
	old := manifest("20260220-020000-old", time.Date(2026, 2, 20, 2, 1, 0, 0, time.UTC), time.Minute)
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if fail.Load() {
				return storage.Manifest{}, nil, errors.New("s3: list s3://bkt/prod/: dial tcp 127.0.0.1:9000: connect: connection refused")
			}
			return old, nil, nil
		},
		Now: func() time.Time { return start },
	})
	d.loadLatest(context.Background())
	_, h := getHealth(t, d.Handler())
	if !slices.ContainsFunc(h.Warnings, func(w string) bool {
		return strings.Contains(w, "last backup is unknown") && strings.Contains(w, "connection refused")
	}) {
		t.Errorf("/healthz warnings %q: want one saying the last backup is unknown, and why", h.Warnings)
	}
	// Once storage answers, the warning goes.
	fail.Store(false)
	d.holderStored(context.Background(), start.Add(-time.Hour))
	if _, h := getHealth(t, d.Handler()); len(h.Warnings) != 0 {
		t.Errorf("/healthz warnings %q after storage answered", h.Warnings)
	}

	// An empty storage is not an error: no warning.
	d2, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			return storage.Manifest{}, nil, fmt.Errorf("s3://bkt/prod: %w", storage.ErrNoBackups)
		},
		Now: func() time.Time { return start },
	})
	d2.loadLatest(context.Background())
	if _, h := getHealth(t, d2.Handler()); len(h.Warnings) != 0 {
		t.Errorf("/healthz warnings %q with an empty storage", h.Warnings)
	}
}

// TestREADMEListsEveryMetric: the README's list of metrics and the
// registry agree, both ways (Go runtime and promhttp's own excepted).
func TestREADMEListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, "**`GET /metrics`**"), strings.Index(readme, "**Notifications**")
	if i < 0 || j < i {
		t.Fatal("README: no metrics list between **`GET /metrics`** and **Notifications**")
	}
	listed := map[string]bool{}
	for _, n := range regexp.MustCompile("`(pgbackups_[a-z_]+)").FindAllStringSubmatch(readme[i:j], -1) {
		listed[n[1]] = true
	}
	d, _ := newDaemon(t, Options{
		Schedule:  mustParse(t, "0 2 * * *"),
		Capture:   func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Blocking:  func() int { return 0 },
		RateLimit: func() int64 { return 0 },
	})
	mfs, err := d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, mf := range mfs {
		if n := mf.GetName(); strings.HasPrefix(n, "pgbackups_") {
			exported[n] = true
			if !listed[n] {
				t.Errorf("%s is exported but not in the README", n)
			}
		}
	}
	for n := range listed {
		if !exported[n] {
			t.Errorf("the README lists %s, which is not exported", n)
		}
	}
}

// unix is t as the timestamp gauges export it.
func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// TestOverdueNamesTheLockHolder: runs skipped because another process
// holds the lock for ever (seen for real: a psql session holding the
// advisory lock) make /healthz overdue; its reason must say why, naming
// the holder, not only that no backup succeeded.
func TestOverdueNamesTheLockHolder(t *testing.T) {
	tick := time.Date(2026, 3, 1, 3, 0, 0, 4e6, time.UTC)
	clock := &fakeClock{t: tick}
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "0 * * * *"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			return manifest("20260301-010000-last", tick.Add(-2*time.Hour+time.Minute), time.Minute), nil, nil
		},
		Lock:        &heldLock{},
		HealthGrace: 10 * time.Minute,
		Now:         clock.Now,
	})
	ctx := context.Background()
	d.loadLatest(ctx)
	d.attempt(ctx, 1, time.Time{}) // skipped: pid 4242 holds the lock
	clock.Set(tick.Add(15 * time.Minute))
	code, h := getHealth(t, d.Handler())
	if code != 503 || h.Status != StatusOverdue || !strings.Contains(h.Reason, "was skipped") || !strings.Contains(h.Reason, "pid 4242") {
		t.Errorf("/healthz %d %s %q: want overdue, naming the lock holder", code, h.Status, h.Reason)
	}
}

// unreadableAtStart is a daemon whose storage fails ("connection refused")
// until fail is cleared, then holds stale, a success long before its clock;
// storage is read again every 20 ms.
func unreadableAtStart(t *testing.T) (d *Daemon, logs *logBuffer, fail *atomic.Bool, stale storage.Manifest) {
	t.Helper()
	old := latestRetryInterval
	latestRetryInterval = 20 * time.Millisecond
	t.Cleanup(func() { latestRetryInterval = old })
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fail = new(atomic.Bool)
	fail.Store(true)
	stale = manifest("20260220-020000-old", time.Date(2026, 2, 20, 2, 1, 0, 0, time.UTC), time.Minute)
	d, logs = newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if fail.Load() {
				return storage.Manifest{}, nil, errors.New("s3: list: connection refused")
			}
			return stale, nil, nil
		},
		Now: func() time.Time { return start },
	})
	return d, logs, fail, stale
}

// TestStorageReadAgainAfterStartup: storage unreadable at start-up is read
// again until it answers, so the last success is known before the next
// backup (a day away on a daily schedule), and stale backups are overdue.
func TestStorageReadAgainAfterStartup(t *testing.T) {
	d, _, fail, stale := unreadableAtStart(t)
	d.loadLatest(context.Background())
	if !d.state.latestUnknown() {
		t.Fatal("storage failed at start-up, yet the newest backups count as known")
	}
	// Not "ok" until the first run (a mistyped bucket, refused
	// credentials): that run may be a day away, and fails the same way.
	if code, h := getHealth(t, d.Handler()); code != http.StatusServiceUnavailable || h.Status != StatusFailing || !strings.Contains(h.Reason, "connection refused") {
		t.Errorf("/healthz %d %s %q with storage unreadable at start-up: want 503 failing, naming the error", code, h.Status, h.Reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.rereadLatest(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond) // several failed reads
	fail.Store(false)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("storage answers again, and rereadLatest still runs")
	}
	cancel()
	code, h := getHealth(t, d.Handler())
	if h.LastSuccess == nil || h.LastSuccess.ID != stale.ID || code != http.StatusServiceUnavailable || h.Status != "overdue" {
		t.Errorf("/healthz %d %q, last success %+v: want the stale backup read from storage, overdue", code, h.Status, h.LastSuccess)
	}
}

// TestStorageReadAgainAfterAFailedRun: a run that failed (storage still
// hung, say) while storage's newest backups were unknown made them count
// as known: rereading stopped, "storage answers again" was logged though
// it did not, and the stored last success was never read.
func TestStorageReadAgainAfterAFailedRun(t *testing.T) {
	d, logs, fail, stale := unreadableAtStart(t)
	d.loadLatest(context.Background())
	d.state.failed(&Failure{At: d.now(), Error: "storage did not answer"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { d.rereadLatest(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond) // several failed reads
	select {
	case <-done:
		t.Fatal("rereadLatest stopped after a failed run, while storage still fails")
	default:
	}
	if strings.Contains(logs.String(), "storage answers again") {
		t.Fatalf("logged that storage answers while it fails:\n%s", logs)
	}
	fail.Store(false)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("storage answers again, and rereadLatest still runs")
	}
	if _, h := getHealth(t, d.Handler()); h.LastSuccess == nil || h.LastSuccess.ID != stale.ID {
		t.Errorf("last success %+v: want the one read from storage once it answered", h.LastSuccess)
	}
}

// TestFailureReadFromStorageDoesNotOverride: a read of storage (at
// start-up, or again while storage was unreadable) that lands after a run
// here must not replace what that run recorded, nor count a failure
// twice.
func TestFailureReadFromStorageDoesNotOverride(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	s := newState(nil, time.Hour, t0, "test")
	if !s.failedInStorage(&Failure{At: t0, Error: "stored"}) || s.consecutiveFailures() != 1 {
		t.Fatalf("a stored failure with nothing known: not recorded (%d failures)", s.consecutiveFailures())
	}
	s = newState(nil, time.Hour, t0, "test")
	s.succeeded(&Success{ID: "new", FinishedAt: t0.Add(time.Hour)})
	if s.failedInStorage(&Failure{At: t0, Error: "older"}) || s.consecutiveFailures() != 0 {
		t.Errorf("a stored failure older than this daemon's success was recorded (%d failures)", s.consecutiveFailures())
	}
	s = newState(nil, time.Hour, t0, "test")
	s.failed(&Failure{At: t0.Add(time.Hour), Error: "here"})
	if s.failedInStorage(&Failure{At: t0, Error: "stored"}) || s.consecutiveFailures() != 1 {
		t.Errorf("a stored failure replaced this daemon's, or counted twice (%d failures)", s.consecutiveFailures())
	}
}

// TestUnencryptedLastSuccessWarned: in a rolling upgrade, or with one
// replica missing PGBACKUPS_AGE_RECIPIENTS, the lock holder's backups were
// stored in plaintext beside encrypted ones, and nothing said so.
func TestUnencryptedLastSuccessWarned(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		enc  string
		to   []string
		warn string
	}{
		{"", nil, "is not encrypted, though this daemon encrypts"},
		{"age", []string{"age1old"}, "is encrypted to other age keys"},
		{"age", []string{"age1new", "age1new"}, ""},
	} {
		m := manifest("20260301-020000-abcd", start.Add(-10*time.Hour), time.Minute)
		m.Encryption, m.EncryptedTo = tc.enc, tc.to
		d, _ := newDaemon(t, Options{
			Schedule:   mustParse(t, "02:00 UTC"),
			Capture:    func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
			Latest:     func(context.Context) (storage.Manifest, *storage.Manifest, error) { return m, nil, nil },
			Now:        func() time.Time { return start },
			EncryptsTo: []string{"age1new"},
		})
		d.loadLatest(context.Background())
		_, h := getHealth(t, d.Handler())
		warned := slices.ContainsFunc(h.Warnings, func(w string) bool { return tc.warn != "" && strings.Contains(w, tc.warn) })
		if warned != (tc.warn != "") || (tc.warn == "" && len(h.Warnings) > 0) {
			t.Errorf("last success encrypted %q to %v: warnings %q, want %q", tc.enc, tc.to, h.Warnings, tc.warn)
		}
	}
}

// TestFollowerReadFailureIsNotFailing: storage read at start-up (no backups
// yet), then one read while following the lock holder fails (a 503, or
// the watch's deadline cutting it): that is no storage that cannot be read
// since start-up, and /healthz said failing on it.
func TestFollowerReadFailureIsNotFailing(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var reads atomic.Int32
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  func(context.Context, *atomic.Int64) (storage.Manifest, error) { return storage.Manifest{}, nil },
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if reads.Add(1) == 1 {
				return storage.Manifest{}, nil, storage.ErrNoBackups
			}
			return storage.Manifest{}, nil, errors.New("s3: list: 503 SlowDown")
		},
		Now: func() time.Time { return start },
	})
	d.loadLatest(context.Background())
	if d.holderStored(context.Background(), start.Add(-time.Hour)) {
		t.Fatal("holderStored found a backup in a failed read")
	}
	if code, h := getHealth(t, d.Handler()); h.Status == StatusFailing {
		t.Errorf("/healthz %d %s %q after one failed follower read: want not failing", code, h.Status, h.Reason)
	}
}
