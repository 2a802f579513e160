package schedule

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// WallClock returns a clock for gocron.WithClock whose timers fire when the
// wall clock now reads reaches their time, not when a duration has passed.
// gocron arms each run's timer for next-now; Go's timers count that on the
// monotonic clock, which stands still while a VM or laptop is suspended
// and ignores a wall clock stepped by NTP. A daily run armed at 01:00 for
// 02:00 on a host suspended from 01:30 to 05:00 would start at 05:30, and
// one whose clock was set forward by three hours at 01:00 would start at
// 05:00 on the wall clock: a late run /livez calls stuck after ten
// minutes, and a restart then skips. A clock set back would start the run
// early, stamped before the schedule's time. WallClock's timers wait in
// steps of at most poll, re-reading now each time: a run starts at its
// time on the wall clock, or within poll after the clock jumped past it or
// the host woke up. now is time.Now outside tests. A timer costs a
// wake-up per poll; a poll of zero or less is a minute.
func WallClock(now func() time.Time, poll time.Duration) clockwork.Clock {
	if poll <= 0 {
		poll = time.Minute // a poll of 0 would spin
	}
	return wallClock{Clock: clockwork.NewRealClock(), now: now, poll: poll}
}

// wallClock is the real clock, but for Now and AfterFunc, the two gocron
// plans runs with.
type wallClock struct {
	clockwork.Clock
	now  func() time.Time
	poll time.Duration
}

func (c wallClock) Now() time.Time { return c.now() }

// AfterFunc calls f in its own goroutine once the wall clock reads d from
// now.
func (c wallClock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	t := &wallTimer{c: c, f: f}
	t.Reset(d)
	return t
}

// wallTimer is a timer that fires at a time on the wall clock.
type wallTimer struct {
	c wallClock
	f func()

	mu    sync.Mutex
	at    time.Time   // when it fires, without a monotonic reading
	armed bool        // set until it fires or is stopped
	gen   int         // counts Resets: a step armed before the last one does nothing
	step  *time.Timer // the current step towards at
}

// Chan is nil, as for time.AfterFunc's timers: f is called instead.
func (t *wallTimer) Chan() <-chan time.Time { return nil }

// Stop keeps f from being called; false if it already was, or the timer
// was stopped.
func (t *wallTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.armed
	t.armed = false
	if t.step != nil {
		t.step.Stop()
	}
	return was
}

// Reset makes the timer fire once the wall clock reads d from now; false
// if it had already fired or been stopped.
func (t *wallTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.armed
	if t.step != nil {
		t.step.Stop()
	}
	t.armed = true
	t.gen++
	// Round(0) drops the monotonic reading, so that the time left is
	// measured on the wall clock each time it is read.
	t.at = t.c.now().Round(0).Add(d)
	t.arm(t.gen)
	return was
}

// arm (t.mu held) schedules the next look at the wall clock: at t.at, or
// after poll if that is sooner.
func (t *wallTimer) arm(gen int) {
	wait := min(max(t.at.Sub(t.c.now()), 0), t.c.poll)
	t.step = time.AfterFunc(wait, func() { t.check(gen) })
}

// check calls f if the wall clock has reached t.at, and otherwise waits
// again.
func (t *wallTimer) check(gen int) {
	t.mu.Lock()
	if !t.armed || gen != t.gen {
		t.mu.Unlock()
		return
	}
	if t.c.now().Before(t.at) {
		t.arm(gen)
		t.mu.Unlock()
		return
	}
	t.armed = false
	t.mu.Unlock()
	t.f()
}
