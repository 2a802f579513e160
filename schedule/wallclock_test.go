package schedule

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// settable is a wall clock a test sets; it carries no monotonic reading,
// as a stepped system clock's readings do not agree with the monotonic one.
type settable struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settable) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settable) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testWallClock is WallClock on clock, looking every 10 ms.
func testWallClock(clock *settable) wallClock {
	return WallClock(clock.Now, 10*time.Millisecond).(wallClock)
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func TestWallTimerFollowsTheWallClock(t *testing.T) {
	start := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)

	t.Run("set forward past it", func(t *testing.T) {
		clock := &settable{t: start}
		var fired atomic.Int32
		testWallClock(clock).AfterFunc(time.Hour, func() { fired.Add(1) })
		time.Sleep(50 * time.Millisecond)
		if fired.Load() != 0 {
			t.Fatal("fired with the wall clock an hour before its time")
		}
		// A host suspended for hours, or a clock stepped forward: the
		// monotonic clock has counted 50 ms of the hour.
		clock.Set(start.Add(3 * time.Hour))
		if !waitFor(2*time.Second, func() bool { return fired.Load() > 0 }) {
			t.Fatal("did not fire once the wall clock passed its time")
		}
		time.Sleep(50 * time.Millisecond)
		if n := fired.Load(); n != 1 {
			t.Errorf("fired %d times, want once", n)
		}
	})

	t.Run("set back before it", func(t *testing.T) {
		clock := &settable{t: start}
		var fired atomic.Bool
		testWallClock(clock).AfterFunc(30*time.Millisecond, func() { fired.Store(true) })
		clock.Set(start.Add(-time.Hour)) // NTP steps a clock that ran ahead
		time.Sleep(150 * time.Millisecond)
		if fired.Load() {
			t.Fatal("fired when the duration had passed, with the wall clock an hour before its time")
		}
		clock.Set(start.Add(30 * time.Millisecond))
		if !waitFor(2*time.Second, fired.Load) {
			t.Fatal("did not fire once the wall clock reached its time")
		}
	})

	t.Run("on time", func(t *testing.T) {
		// With the wall clock running as the monotonic one does, the timer
		// fires after its duration, not after a poll step.
		c := WallClock(time.Now, time.Minute)
		began := time.Now()
		fired := make(chan time.Duration, 1)
		c.AfterFunc(200*time.Millisecond, func() { fired <- time.Since(began) })
		select {
		case took := <-fired:
			if took < 200*time.Millisecond {
				t.Errorf("fired after %s, before its 200ms", took)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("did not fire within 30s")
		}
	})

	t.Run("stop and reset", func(t *testing.T) {
		clock := &settable{t: start}
		var fired atomic.Int32
		timer := testWallClock(clock).AfterFunc(time.Hour, func() { fired.Add(1) })
		if !timer.Stop() {
			t.Error("Stop of an armed timer = false")
		}
		if timer.Stop() {
			t.Error("Stop of a stopped timer = true")
		}
		clock.Set(start.Add(2 * time.Hour))
		time.Sleep(50 * time.Millisecond)
		if fired.Load() != 0 {
			t.Fatal("a stopped timer fired")
		}
		if timer.Reset(time.Hour) {
			t.Error("Reset of a stopped timer = true")
		}
		clock.Set(start.Add(3*time.Hour - time.Second))
		time.Sleep(50 * time.Millisecond)
		if fired.Load() != 0 {
			t.Fatal("fired before the time Reset gave it")
		}
		clock.Set(start.Add(3 * time.Hour))
		if !waitFor(2*time.Second, func() bool { return fired.Load() == 1 }) {
			t.Fatal("did not fire at the time Reset gave it")
		}
		if timer.Reset(time.Hour) {
			t.Error("Reset of a fired timer = true")
		}
		if !timer.Reset(2 * time.Hour) {
			t.Error("Reset of an armed timer = false")
		}
		clock.Set(start.Add(4 * time.Hour)) // the first Reset's time, not the second's
		time.Sleep(50 * time.Millisecond)
		if n := fired.Load(); n != 1 {
			t.Errorf("fired %d times, want once: a Reset left the earlier time armed", n)
		}
	})
}

// TestGocronOnWallClock runs a gocron scheduler on WallClock, as the daemon
// does: a daily run whose time the wall clock jumps past (a suspended host
// waking up) starts at once, once, and the next is planned for the day
// after. On gocron's default clock it would start an hour later.
func TestGocronOnWallClock(t *testing.T) {
	s := mustParse(t, "02:00 UTC")
	clock := &settable{t: time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)}
	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC), gocron.WithClock(testWallClock(clock)))
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Shutdown()
	var mu sync.Mutex
	var runs []time.Time
	def, opt := s.Gocron()
	job, err := sched.NewJob(def, gocron.NewTask(func() {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, clock.Now())
	}), opt, gocron.WithSingletonMode(gocron.LimitModeReschedule))
	if err != nil {
		t.Fatal(err)
	}
	sched.Start()
	ran := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(runs)
	}
	time.Sleep(50 * time.Millisecond)
	if ran() != 0 {
		t.Fatal("ran an hour before its time")
	}
	woke := time.Date(2026, 3, 1, 5, 0, 0, 0, time.UTC)
	clock.Set(woke)
	if !waitFor(5*time.Second, func() bool { return ran() > 0 }) {
		t.Fatal("the run the wall clock passed did not start")
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	got := runs
	mu.Unlock()
	if len(got) != 1 || !got[0].Equal(woke) {
		t.Errorf("runs at %v, want one at %v", got, woke)
	}
	want := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	if !waitFor(5*time.Second, func() bool { next, err := job.NextRun(); return err == nil && next.Equal(want) }) {
		next, err := job.NextRun()
		t.Errorf("next run %v, %v; want %v", next, err, want)
	}
}
