package dump

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter caps a byte stream's rate (PGBACKUPS_MAX_RATE). Reading pg_dump's
// stdout slowly is what reduces the load on the database: pg_dump blocks
// writing to the full pipe, stops reading its socket, and the server
// backend blocks in its COPY until the client catches up, so the table scan
// proceeds at the limited rate. The limit can change while a dump runs (the
// adaptive mode), and is readable for metrics.
//
// It is a token bucket kept as one "theoretical arrival time" (GCRA): every
// byte read pushes tat forward by 1/limit seconds, and a reader that gets
// ahead of the clock sleeps until it is not. Credit for an idle stream is
// capped at limiterBurst of transfer, so the long-run rate never exceeds the
// limit by more than that.
type Limiter struct {
	limit atomic.Int64 // bytes per second; 0 is unlimited
	total atomic.Int64 // bytes read through it so far

	mu  sync.Mutex
	tat time.Time

	now   func() time.Time    // tests replace the clock
	sleep func(time.Duration) // and sleeping
}

// limiterBurst is how far ahead of the limit a stream may run after being
// idle (or read slowly by the compressor): 50ms worth of bytes.
const limiterBurst = 50 * time.Millisecond

// Bounds on how many bytes one Read passes before paying for them, so
// sleeps stay short (~50ms) and a cancelled dump is not held up by a sleep.
const (
	minLimiterChunk = 4 << 10
	maxLimiterChunk = 1 << 20
)

// NewLimiter returns a Limiter at bytesPerSecond; 0 is unlimited.
func NewLimiter(bytesPerSecond int64) *Limiter {
	l := &Limiter{now: time.Now, sleep: time.Sleep}
	l.SetLimit(bytesPerSecond)
	return l
}

// SetLimit changes the limit; 0 (or less) lifts it. Bytes already paid for
// are not re-priced.
func (l *Limiter) SetLimit(bytesPerSecond int64) { l.limit.Store(max(bytesPerSecond, 0)) }

// Limit is the current limit in bytes per second, 0 when unlimited.
func (l *Limiter) Limit() int64 { return l.limit.Load() }

// Reader returns r read at no more than the limit.
func (l *Limiter) Reader(r io.Reader) io.Reader { return &limitedReader{r: r, l: l} }

type limitedReader struct {
	r io.Reader
	l *Limiter
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	lim := lr.l.Limit()
	if lim > 0 {
		// A twentieth of a second's worth per read.
		chunk := min(max(int(lim/20), minLimiterChunk), maxLimiterChunk)
		if len(p) > chunk {
			p = p[:chunk]
		}
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		lr.l.take(n)
	}
	return n, err
}

// Total is how many bytes have been read through the Limiter's readers:
// the adaptive mode's measure of how fast the dump actually runs.
func (l *Limiter) Total() int64 { return l.total.Load() }

// take accounts for n bytes, sleeping while the stream is ahead of the limit.
func (l *Limiter) take(n int) {
	l.total.Add(int64(n))
	lim := l.Limit()
	l.mu.Lock()
	now := l.now()
	if lim <= 0 {
		l.tat = now
		l.mu.Unlock()
		return
	}
	if earliest := now.Add(-limiterBurst); l.tat.Before(earliest) {
		l.tat = earliest
	}
	l.tat = l.tat.Add(time.Duration(float64(n) / float64(lim) * float64(time.Second)))
	wait := l.tat.Sub(now)
	l.mu.Unlock()
	if wait > 0 {
		l.sleep(wait)
	}
}
