package dump

import (
	"testing"
	"time"
)

// zeros is an endless, instant source: the limiter is the only brake.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Pacing watches a Limiter from inside, through its clock and its sleep,
// and tells the time the limiter held a stream back from the time the
// stream's reader was away on its own account: a loaded machine that did
// not run it, a sleep that overran, a producer slower than the limit. The
// limiter lets a late reader catch up by up to limiterBurst; time lost
// beyond that is gone, and a rate taken over wall time charges it to the
// limiter, so it fails on a slow machine with the limiter right.
//
// Exported for the external tests (TestCaptureMaxRate). The limiter must
// be read from one goroutine, and the Pacing read once that one is done.
type Pacing struct {
	first  time.Time     // the clock reading of the first take
	at     time.Time     // the clock reading of the latest take
	due    time.Time     // when the limiter let the latest take's bytes go: at, plus the sleep it asked for
	lost   time.Duration // credit the limiter dropped for lateness not its own
	sleeps int           // sleeps it asked for
}

// WatchPacing installs a Pacing in l's clock and sleep, before l is read.
func WatchPacing(l *Limiter) *Pacing {
	p := &Pacing{}
	l.now = func() time.Time {
		now := time.Now()
		// take reads the clock once, under l.mu, before it moves tat: the
		// credit it is about to drop is what lies more than limiterBurst
		// behind now. That is forgiven only as far as the reader came back
		// after the limiter had let it go; lateness from a sleep the
		// limiter asked for is the limiter's.
		if p.due.IsZero() {
			p.first = now
		} else if d := min(now.Add(-limiterBurst).Sub(l.tat), now.Sub(p.due)); d > 0 {
			p.lost += d
		}
		p.at, p.due = now, now
		return now
	}
	l.sleep = func(d time.Duration) {
		p.sleeps++
		p.due = p.at.Add(d)
		time.Sleep(d)
	}
	return p
}

// PacingMark is where a rate measurement starts.
type PacingMark struct {
	due  time.Time // when the bytes before it went; zero: the first take
	lost time.Duration
}

// Mark starts a measurement of the bytes read from now on: from when the
// limiter let the bytes before them go, so that the reader's lateness
// since then is accounted for, or for a limiter not yet read, from its
// first read (a producer's start-up is not the limiter's).
func (p *Pacing) Mark() PacingMark { return PacingMark{p.due, p.lost} }

// Rate is the rate at which the limiter let the n bytes read since m go,
// over the time from m to the release of the last of them, less the time
// the reader lost on its own account; paced is that time and lost what
// was taken off.
func (p *Pacing) Rate(n int64, m PacingMark) (rate float64, paced, lost time.Duration) {
	start := m.due
	if start.IsZero() {
		start = p.first
	}
	lost = p.lost - m.lost
	paced = p.due.Sub(start) - lost
	if p.due.IsZero() || paced <= 0 {
		return 0, 0, lost
	}
	return float64(n) / paced.Seconds(), paced, lost
}

// Sleeps is how many times the limiter has slept.
func (p *Pacing) Sleeps() int { return p.sleeps }

// TestLimiterAccuracy reads an endless source through the limiter for three
// seconds of its pacing at several rates and checks the rate it let
// through is within 10% of the limit.
func TestLimiterAccuracy(t *testing.T) {
	t.Parallel()
	for _, rate := range []int64{256 << 10, 4 << 20, 64 << 20} {
		t.Run(rateString(rate), func(t *testing.T) {
			t.Parallel()
			l := NewLimiter(rate)
			p := WatchPacing(l)
			got := measure(t, l, p, 3*time.Second)
			t.Logf("limit %d B/s, measured %.0f B/s (%+.2f%%)", rate, got, 100*(got-float64(rate))/float64(rate))
			if d := got/float64(rate) - 1; d > 0.10 || d < -0.10 {
				t.Fatalf("measured %.0f B/s, limit %d B/s: off by %.1f%%", got, rate, 100*d)
			}
		})
	}
}

// measure reads an endless source through l, which p watches, in 128 KiB
// reads (zstd's block size) until the limiter has paced it for d, and
// returns the rate it let through (Pacing.Rate). Time the reader lost on
// its own account is made up by reading longer, up to ten times d.
func measure(t *testing.T, l *Limiter, p *Pacing, d time.Duration) float64 {
	t.Helper()
	r, buf := l.Reader(zeros{}), make([]byte, 128<<10)
	var n int64
	mark, start := p.Mark(), time.Now()
	for {
		rate, paced, lost := p.Rate(n, mark)
		if paced >= d {
			t.Logf("%d bytes in %s of pacing (%s in all, %s lost by the reader) = %.0f B/s",
				n, paced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), lost.Round(time.Millisecond), rate)
			return rate
		}
		// However slow the machine, no more than the limit goes through
		// in wall time, with the burst and the read in hand.
		wall := time.Since(start)
		if lim := l.Limit(); float64(n) > 1.1*float64(lim)*(wall+limiterBurst).Seconds()+float64(len(buf)) {
			t.Fatalf("%d bytes went through in %s, limit %d B/s", n, wall, lim)
		}
		if wall > 10*d {
			t.Fatalf("paced for %s of %s (%d sleeps): the reader lost %s on its own account; too loaded a machine to measure on", paced, wall, p.Sleeps(), lost)
		}
		m, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(m)
	}
}

// TestLimiterSetLimit changes the limit mid-stream (as the adaptive mode
// does), then lifts it.
func TestLimiterSetLimit(t *testing.T) {
	t.Parallel()
	l := NewLimiter(1 << 20)
	p := WatchPacing(l)
	if got := measure(t, l, p, time.Second); got > 1.1*(1<<20) {
		t.Fatalf("at 1 MiB/s measured %.0f B/s", got)
	}
	l.SetLimit(8 << 20)
	if got := measure(t, l, p, time.Second); got < 0.9*(8<<20) || got > 1.1*(8<<20) {
		t.Fatalf("at 8 MiB/s measured %.0f B/s", got)
	}
	l.SetLimit(0)
	if l.Limit() != 0 {
		t.Fatalf("Limit() = %d after lifting", l.Limit())
	}
	// Lifted, the limiter costs the stream nothing: no sleep, no read cut
	// short, however fast the machine reads. 32 MiB, four seconds' worth
	// at the limit before.
	r, buf := l.Reader(zeros{}), make([]byte, 128<<10)
	sleeps, start := p.Sleeps(), time.Now()
	for range 256 {
		if m, err := r.Read(buf); err != nil || m != len(buf) {
			t.Fatalf("unlimited: a read of %d bytes returned %d, %v", len(buf), m, err)
		}
	}
	if n := p.Sleeps() - sleeps; n != 0 {
		t.Fatalf("unlimited: the limiter slept %d times in 256 reads", n)
	}
	t.Logf("unlimited: 32 MiB in %s", time.Since(start))
}

// TestLimiterBurst checks an idle stream earns at most limiterBurst of
// credit, with a fake clock.
func TestLimiterBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	var slept time.Duration
	l := &Limiter{now: func() time.Time { return now }, sleep: func(d time.Duration) { slept += d; now = now.Add(d) }}
	l.SetLimit(1000) // bytes per second
	l.take(100)      // first read: 50ms of credit, 100ms of bytes
	if slept != 50*time.Millisecond {
		t.Fatalf("slept %s, want 50ms", slept)
	}
	now = now.Add(time.Hour) // idle
	slept = 0
	l.take(1000)
	if slept != 950*time.Millisecond {
		t.Fatalf("after an idle hour slept %s, want 950ms (only 50ms of credit)", slept)
	}
}
