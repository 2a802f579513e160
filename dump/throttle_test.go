package dump

import (
	"io"
	"testing"
	"time"
)

// zeros is an endless, instant source: the limiter is the only brake.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestLimiterAccuracy reads an endless source through the limiter for three
// seconds at several rates and checks the measured rate is within 10%.
func TestLimiterAccuracy(t *testing.T) {
	t.Parallel()
	for _, rate := range []int64{256 << 10, 4 << 20, 64 << 20} {
		t.Run(rateString(rate), func(t *testing.T) {
			t.Parallel()
			got := measure(t, NewLimiter(rate).Reader(zeros{}), 3*time.Second)
			t.Logf("limit %d B/s, measured %.0f B/s (%+.2f%%)", rate, got, 100*(got-float64(rate))/float64(rate))
			if d := got/float64(rate) - 1; d > 0.10 || d < -0.10 {
				t.Fatalf("measured %.0f B/s, limit %d B/s: off by %.1f%%", got, rate, 100*d)
			}
		})
	}
}

// measure reads r in 128 KiB buffers (zstd's block size) for about d and
// returns bytes per second.
func measure(t *testing.T, r io.Reader, d time.Duration) float64 {
	t.Helper()
	buf := make([]byte, 128<<10)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		m, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(m)
	}
	return float64(n) / time.Since(start).Seconds()
}

// TestLimiterSetLimit changes the limit mid-stream (as the adaptive mode
// does), then lifts it.
func TestLimiterSetLimit(t *testing.T) {
	t.Parallel()
	l := NewLimiter(1 << 20)
	r := l.Reader(zeros{})
	if got := measure(t, r, time.Second); got > 1.1*(1<<20) {
		t.Fatalf("at 1 MiB/s measured %.0f B/s", got)
	}
	l.SetLimit(8 << 20)
	if got := measure(t, r, time.Second); got < 0.9*(8<<20) || got > 1.1*(8<<20) {
		t.Fatalf("at 8 MiB/s measured %.0f B/s", got)
	}
	l.SetLimit(0)
	if l.Limit() != 0 {
		t.Fatalf("Limit() = %d after lifting", l.Limit())
	}
	if got := measure(t, r, 200*time.Millisecond); got < 100<<20 {
		t.Fatalf("unlimited measured only %.0f B/s", got)
	}
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
