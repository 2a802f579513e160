package dump

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestAdaptiveController(t *testing.T) {
	const M = 1 << 20
	a := Adaptive{Floor: 4 * M, Ceiling: 64 * M, Busy: 1, Idle: 0.5}.withDefaults()
	for _, tc := range []struct {
		cur, rate int64 // rate: what the dump ran at; 0 unknown
		load      float64
		want      int64
	}{
		{cur: 32 * M, rate: 32 * M, load: 3, want: 32 * M * 7 / 10}, // busy: cut to 0.7
		{cur: 5 * M, rate: 5 * M, load: 1, want: 4 * M},             // never below the floor
		{cur: 4 * M, rate: 4 * M, load: 10, want: 4 * M},            // at the floor, stays
		{cur: 0, load: 2, want: 64 * M * 7 / 10},                    // unlimited, rate unknown, busy: 0.7 of the ceiling
		{cur: 0, rate: 20 * M, load: 2, want: 14 * M},               // unlimited and busy: 0.7 of the actual rate
		{cur: 64 * M, rate: 20 * M, load: 2, want: 14 * M},          // a limit the dump does not reach: 0.7 of the rate
		{cur: 8 * M, rate: 8 * M, load: 0.75, want: 8 * M},          // between idle and busy: hold
		{cur: 8 * M, rate: 8 * M, load: 0.5, want: 12 * M},          // idle: grow by half
		{cur: 8 * M, rate: 6 * M, load: 0.5, want: 12 * M},          // idle, at 3/4 of the limit: grow
		{cur: 8 * M, rate: 5 * M, load: 0.5, want: 8 * M},           // idle, limit not reached: hold
		{cur: 8 * M, rate: 0, load: 0, want: 8 * M},                 // idle, nothing read: hold
		{cur: 48 * M, rate: 48 * M, load: 0, want: 0},               // past the ceiling: lifted
		{cur: 0, rate: 100 * M, load: 0, want: 0},                   // unlimited and idle: stays
	} {
		c := &control{a: a} // in slow start
		if got := c.next(tc.cur, tc.rate, tc.load, 0); got != tc.want {
			t.Errorf("next(%s at %s, %.2f) = %s, want %s", rateString(tc.cur), rateString(tc.rate), tc.load, rateString(got), rateString(tc.want))
		}
	}
	// From the floor to unlimited in slow start and back: bounded number
	// of steps. The loops stop after a thousand, so a controller that
	// never gets there fails here rather than spin until go test's timeout.
	const never = 1000
	c := &control{a: a}
	cur, up := a.Floor, 0
	for cur != 0 && up < never {
		cur, up = c.next(cur, cur, 0, 0), up+1 // the dump keeps up with the limit
	}
	if cur != 0 {
		t.Fatalf("not unlimited after %d idle Intervals of slow start from the floor: %d B/s", up, cur)
	}
	down := 0
	for cur != a.Floor && down < never {
		cur, down = c.next(cur, 0, 5, 0), down+1
	}
	if cur != a.Floor {
		t.Fatalf("not at the floor after %d busy Intervals from unlimited: %d B/s", down, cur)
	}
	if up > 10 || down > 12 {
		t.Errorf("floor to unlimited in %d steps, back in %d; want at most 10 and 12", up, down)
	}

	// After the application was busy: three idle Intervals in a row
	// before growing; then back toward the rate of the last cut (32 MiB/s
	// here) by half the gap (at least a sixteenth of the limit, at least
	// Floor/4 = 1 MiB/s), and past it by one such step, then two, then
	// three. An Interval between idle and busy restarts the count.
	if !c.congested {
		t.Fatal("busy Intervals did not end slow start")
	}
	cur = 32 * M
	for i, tc := range []struct {
		rate int64
		load float64
		want float64 // MiB/s; 0 = unlimited
	}{
		{32 * M, 3, 22.4},                // busy at 32 MiB/s: cut to 0.7, and 32 is the peak
		{22 * M, 0, 22.4},                // cooling down
		{22 * M, 0, 22.4},                //
		{22 * M, 0.75, 22.4},             // between idle and busy: the count restarts
		{22 * M, 0, 22.4},                //
		{22 * M, 0, 22.4},                //
		{22 * M, 0, 27.2},                // the third idle Interval in a row: half the gap to 32
		{27 * M, 0, 29.6},                // half the gap
		{29 * M, 0, 29.6 + 29.6/16},      // a sixteenth is more than half the gap
		{31 * M, 0, 32},                  // not past the peak
		{31 * M, 0, 34},                  // probing: one step (32/16)
		{20 * M, 0, 34},                  // the dump does not reach the limit: hold
		{34 * M, 0, 34 + 2*34.0/16},      // two steps
		{38 * M, 0, 38.25 + 3*38.25/16},  // three
		{40 * M, 3, 28},                  // busy at 40 MiB/s: cut to 0.7 of it; 40 is the new peak
		{28 * M, 0, 28}, {28 * M, 0, 28}, // cooling down again
		{28 * M, 0, 34}, // half the gap to 40
	} {
		got := c.next(cur, tc.rate, tc.load, 0)
		if d := float64(got)/M - tc.want; d < -0.001 || d > 0.001 {
			t.Fatalf("step %d after congestion: next(%s at %s, %.2f) = %s, want %.3f MiB/s", i, rateString(cur), rateString(tc.rate), tc.load, rateString(got), tc.want)
		}
		cur = got
	}

	// A busy Interval right after the baseline, at the start rate (too low
	// to have caused it, as in bench/nostall.sh's slow rounds): the dump
	// is back at 8 MiB/s within seven Intervals and at 32 within fifteen
	// (a sixteenth per Interval would take twenty-five), but no sooner
	// than slow start would have got there.
	b := Adaptive{}.withDefaults()
	c = &control{a: b}
	cur = c.next(b.Start, b.Start, 3, 0)
	steps, at8 := 0, 0
	for cur < 32*M && cur != 0 && steps < never {
		cur, steps = c.next(cur, cur, 0, 0), steps+1
		if at8 == 0 && cur >= b.Start {
			at8 = steps
		}
	}
	if cur < 32*M {
		t.Fatalf("after a busy Interval at the start rate: %d B/s after %d idle Intervals, want 32 MiB/s", cur, steps)
	}
	if at8 > 7 || steps > 15 || steps < 8 {
		t.Errorf("after a busy Interval at the start rate: back to 8 MiB/s in %d Intervals, 32 MiB/s in %d; want at most 7, and 8-15", at8, steps)
	}
	// And growth past the peak never outpaces slow start (half per
	// Interval), however long the probe, and ends unlimited.
	for probe := 0; cur != 0; probe++ {
		if probe == never {
			t.Fatalf("probing past the peak: %d B/s after %d idle Intervals, want unlimited", cur, probe)
		}
		nxt := c.next(cur, cur, 0, 0)
		if nxt != 0 && nxt > cur+cur/2 {
			t.Fatalf("probe from %s to %s: faster than slow start", rateString(cur), rateString(nxt))
		}
		cur = nxt
	}

	// Against a baseline of 4 sessions (Headroom 0.5, Busy 1, Idle 0.5):
	// busy from 7, idle up to 5.3.
	for _, tc := range []struct {
		load float64
		want int64
	}{{7, 8 * M * 7 / 10}, {6.9, 8 * M}, {5.4, 8 * M}, {5.3, 12 * M}, {4, 12 * M}, {0, 12 * M}} {
		c := &control{a: a}
		if got := c.next(8*M, 8*M, tc.load, 4); got != tc.want {
			t.Errorf("baseline 4: next(8 MiB/s, %.2f) = %s, want %s", tc.load, rateString(got), rateString(tc.want))
		}
	}

	d := Adaptive{}.withDefaults()
	if d.Floor != DefaultAdaptiveFloor || d.Start != DefaultAdaptiveStart || d.Ceiling != DefaultAdaptiveCeiling || d.Busy != 0.5 || d.Idle != 0.25 || d.Interval <= 0 ||
		d.Headroom != 0.5 || d.Baseline != 3*time.Second || d.Rebaseline != 5*time.Minute {
		t.Errorf("defaults: %+v", d)
	}
	if w := (Adaptive{Busy: 0.4}).withDefaults(); w.Idle >= w.Busy {
		t.Errorf("idle %.2f not below busy %.2f", w.Idle, w.Busy)
	}
}

// TestAdaptiveSlowSamples: on a loaded server the load query answers
// slowly, and fifty samples can take longer than an Interval. The Interval
// still ends on time, so the controller acts once per Interval rather than
// once per fifty samples. Here each sample takes a tenth of an Interval
// (fifty would take five Intervals) and the application is busy
// throughout: a cut per Interval takes the limit to 0.7^n of the start
// within n Intervals, a cut per fifty samples to about 0.7^(n/5). The test
// counts samples, not time: 120 of them span twelve Intervals or more (on
// a slow machine a sample takes longer, and an Interval holds fewer), so
// ten or more cuts; counted in samples, two.
func TestAdaptiveSlowSamples(t *testing.T) {
	const (
		interval = 100 * time.Millisecond
		slow     = interval / 10
		start    = 1 << 20
		samples  = 120
	)
	lim := NewLimiter(0)
	reached, release := make(chan struct{}), make(chan struct{})
	busy := 0 // busy samples taken, by Watch's goroutine
	a := &Adaptive{
		Limiter: lim, Floor: 1 << 10, Start: start, Interval: interval, Baseline: interval,
		sample: func(ctx context.Context) (int, error) {
			if busy == 0 && lim.Limit() != start {
				return 0, nil // an idle baseline, until Watch sets Start at its end
			}
			if busy++; busy > samples {
				// The controller has acted on the first 120: hold Watch
				// here while the test reads the limit.
				if busy == samples+1 {
					close(reached)
				}
				<-release
				return 0, ctx.Err()
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(slow):
			}
			return 10, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Watch(ctx, Running{ID: "slow-samples"}) }()
	var got int64
	var read bool
	select {
	case <-reached:
		// Read while Watch runs: once it returns, the limit is back at
		// Floor whatever the controller did (TestAdaptiveEndsAtFloor).
		got, read = lim.Limit(), true
	case <-time.After(time.Minute):
	}
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if !read {
		t.Fatalf("Watch took fewer than %d busy samples of %s in a minute", samples, slow)
	}
	if want := int64(start * math.Pow(0.7, 6)); got <= 0 || got > want {
		t.Errorf("limit %s after %d busy samples of a tenth of an Interval; want at most %s (six cuts of 0.7): the Interval waits for its fifty samples",
			rateString(got), samples, rateString(want))
	}
}

// TestAdaptiveEndsAtFloor: the limit is a gauge between backups too, and
// must not keep showing where the last dump's controller left it. On an
// idle application slow start raises the limit above Start; when the dump
// ends, the limit goes back to Floor, where the next dump starts.
func TestAdaptiveEndsAtFloor(t *testing.T) {
	const interval = 50 * time.Millisecond
	lim := NewLimiter(0)
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { // a dump of up to 64 MiB/s
		defer close(fed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			lim.take(64 << 10)
		}
	}()
	defer func() { close(stop); <-fed }()
	a := &Adaptive{
		Limiter: lim, Floor: 1 << 20, Start: 2 << 20, Interval: interval, Baseline: interval,
		sample: func(context.Context) (int, error) { return 0, nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Watch(ctx, Running{ID: "ends-at-floor"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for lim.Limit() <= a.Start && time.Now().Before(deadline) {
		time.Sleep(interval)
	}
	if got := lim.Limit(); got <= a.Start {
		t.Fatalf("limit %s after slow start on an idle application; want above the start %s", rateString(got), rateString(a.Start))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if got := lim.Limit(); got != a.Floor {
		t.Errorf("limit %s after the dump ended; want the floor %s, where the next dump starts", rateString(got), rateString(a.Floor))
	}
}
