package daemon

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestGaveUpThenAnotherReplicaBackedUp: this daemon's run failed and it
// gave up (the database was down); another replica, following the lock,
// backed up once it came back. /healthz here must not say "failing" until
// the next scheduled run. Seen for real: a replica stayed failing after the
// other stored a backup, until its next run.
func TestGaveUpThenAnotherReplicaBackedUp(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	var calls atomic.Int32
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  (&failingCapture{fails: 100}).capture,
		Retry:    Retry{Max: 0},
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			if calls.Add(1) < 3 {
				return manifest("20260228-020000-old", tick.Add(-24*time.Hour), time.Minute), nil, nil
			}
			return manifest("20260301-020500-othr", now(), time.Minute), nil, nil
		},
		FollowInterval: 10 * time.Millisecond,
		HealthGrace:    time.Hour,
		Now:            now,
	})
	ctx := context.Background()
	background(t, func() { d.runScheduled(ctx, ctx, tick) })(5*time.Second, "runScheduled still running")
	code, h := getHealth(t, d.Handler())
	if code != 200 || h.LastSuccess == nil || h.LastSuccess.ID != "20260301-020500-othr" {
		t.Errorf("/healthz %d %s, last success %+v: want the other replica's backup", code, h.Status, h.LastSuccess)
	}
}

// TestLateRunIsNotSkipped: a run that starts 40 s late (the process was
// stopped with SIGSTOP across its time, then continued) is that run, late;
// the log must not say runs were skipped because a backup was running.
func TestLateRunIsNotSkipped(t *testing.T) {
	due := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: due.Add(40 * time.Second)}
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "* * * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			return manifest("20260301-020040-late", clock.Now(), time.Second), nil
		},
		Now: clock.Now,
	})
	d.nextRun = due
	ctx := context.Background()
	d.scheduled(ctx, ctx)
	out := logs.String()
	if strings.Contains(out, "previous backup was still running") || strings.Contains(out, "skipped") {
		t.Errorf("a late run is logged as skipped runs:\n%s", out)
	}
	if !strings.Contains(out, "scheduled run started late") || !strings.Contains(out, "late_by=40s") {
		t.Errorf("the late start is not logged:\n%s", out)
	}
}

// TestWatchEndsBeforeTheNextRun: the watch after a run given up (and the
// one after a skip) runs inside the run's gocron job, and gocron drops the
// next run while that job still runs (singleton mode). A storage read
// begun just before the next run must not hold the job past it.
func TestWatchEndsBeforeTheNextRun(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	now := runningClock(tick.Add(56 * time.Second))
	next := tick.Add(time.Minute)
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "* * * * *"),
		Capture:  (&failingCapture{fails: 100}).capture,
		Retry:    Retry{Max: 0},
		Latest: func(ctx context.Context) (storage.Manifest, *storage.Manifest, error) {
			select { // a slow store: each read takes 10 s
			case <-time.After(10 * time.Second):
			case <-ctx.Done():
				return storage.Manifest{}, nil, ctx.Err()
			}
			return manifest("20260301-015900-old", tick.Add(-time.Minute), time.Second), nil, nil
		},
		FollowInterval: 100 * time.Millisecond,
		Now:            now,
	})
	ctx := context.Background()
	background(t, func() { d.runScheduled(ctx, ctx, tick) })(30*time.Second, "runScheduled still running after 30 s")
	if end := now(); !end.Before(next) {
		t.Errorf("the run's job ended at %s, at or past the next run at %s: gocron would drop that run", end.Format(time.TimeOnly), next.Format(time.TimeOnly))
	}

	// Stopping backups (the daemon shutting down) ends the watch at once.
	bctx, cancel := context.WithCancel(ctx)
	d2, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture:  (&failingCapture{fails: 100}).capture,
		Retry:    Retry{Max: 0},
		Latest: func(context.Context) (storage.Manifest, *storage.Manifest, error) {
			return storage.Manifest{}, nil, storage.ErrNoBackups
		},
		FollowInterval: 100 * time.Millisecond,
		Now:            runningClock(tick),
	})
	ended := background(t, func() { d2.runScheduled(ctx, bctx, tick) })
	time.Sleep(300 * time.Millisecond)
	cancel()
	ended(5*time.Second, "the watch after a run given up outlived the backups' context")
}

// TestFailedEventNamesTheBackup: a failed attempt that got as far as an id
// (its failed manifest is stored) says which in the webhook's backup_id.
func TestFailedEventNamesTheBackup(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "02:00 UTC"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			m := manifest("20260301-020000-fail", tick, time.Second)
			m.Status = storage.StatusFailed
			return m, errors.New("pg_dump: exit status 1")
		},
		Retry: Retry{Max: 0},
		Now:   runningClock(tick),
	})
	got := d.event(EventFailed, d.attempt(context.Background(), 1, time.Time{}), 1)
	if got.BackupID != "20260301-020000-fail" || got.Database != "app" || got.Error == "" {
		t.Errorf("failed event %+v, want the failed backup's id, database and error", got)
	}
}

// TestProgressNamesTheBackup: the daemon's progress lines carry the
// backup's id once the capture has one, and the capture learns its
// attempt, for its own lines.
func TestProgressNamesTheBackup(t *testing.T) {
	tick := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	var attempt int
	d, logs := newDaemon(t, Options{
		Schedule:         mustParse(t, "02:00 UTC"),
		ProgressInterval: 10 * time.Millisecond,
		Capture: func(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error) {
			var began func(string)
			attempt, began = Attempt(ctx)
			began("20260301-020000-prog")
			progress.Store(1234)
			time.Sleep(100 * time.Millisecond)
			return manifest("20260301-020000-prog", tick, time.Second), nil
		},
		Now: runningClock(tick),
	})
	if o := d.attempt(context.Background(), 3, time.Time{}); o.err != nil {
		t.Fatal(o.err)
	}
	if attempt != 3 {
		t.Errorf("the capture was told attempt %d, want 3", attempt)
	}
	if !strings.Contains(logs.String(), `msg="backup in progress" component=daemon attempt=3 backup=20260301-020000-prog dump_bytes=1234`) {
		t.Errorf("no progress line naming the backup:\n%s", logs)
	}
	if n, _ := Attempt(context.Background()); n != 0 {
		t.Errorf("Attempt outside the daemon = %d, want 0", n)
	}
}

// TestEarlyRunWaitsForItsTime: gocron's timers run on the monotonic clock,
// so a wall clock set back after a run was planned starts it early. The
// run waits for its time on the wall clock, then backs up, stamped then.
func TestEarlyRunWaitsForItsTime(t *testing.T) {
	due := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	// Set back after gocron armed its timer; by half a second, as ntpd
	// steps any offset over 128 ms.
	clock := &fakeClock{t: due.Add(-500 * time.Millisecond)}
	var capturedAt atomic.Value
	d, logs := newDaemon(t, Options{
		Schedule: mustParse(t, "0 2 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			capturedAt.Store(clock.Now())
			return manifest("20260301-020000-erly", clock.Now(), time.Second), nil
		},
		Now: clock.Now,
	})
	d.nextRun = due
	ctx := context.Background()
	ended := background(t, func() { d.scheduled(ctx, ctx) })
	time.Sleep(300 * time.Millisecond)
	if at := capturedAt.Load(); at != nil {
		t.Fatalf("backed up at %v, before the run's time %v", at, due)
	}
	clock.Set(due) // the wall clock reaches the run's time
	ended(10*time.Second, "the early run did not back up once its time came")
	if at, _ := capturedAt.Load().(time.Time); !at.Equal(due) {
		t.Errorf("backed up at %v, want %v", at, due)
	}
	if !strings.Contains(logs.String(), "scheduled run started early") {
		t.Errorf("the early start is not logged:\n%s", logs)
	}
	if next := d.nextRun; !next.Equal(due.Add(24 * time.Hour)) {
		t.Errorf("next run expected %v, want the day after", next)
	}
}

// TestEarlyRunStopsWithTheDaemon: a run waiting for its time ends, without
// backing up, when the daemon stops.
func TestEarlyRunStopsWithTheDaemon(t *testing.T) {
	due := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: due.Add(-time.Hour)}
	var captured atomic.Bool
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "0 2 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			captured.Store(true)
			return manifest("20260301-020000-stop", clock.Now(), time.Second), nil
		},
		Now: clock.Now,
	})
	d.nextRun = due
	stop, cancel := context.WithCancel(context.Background())
	ended := background(t, func() { d.scheduled(stop, context.Background()) })
	time.Sleep(200 * time.Millisecond)
	cancel()
	ended(5*time.Second, "a run waiting for its time outlived the daemon's stop")
	if captured.Load() {
		t.Error("a run stopped while waiting for its time backed up")
	}
}
