package dump

import (
	"cmp"
	"io"
	"log/slog"
	"slices"
	"time"
)

// NoStallOptions configure the mechanisms that keep a backup from degrading
// the database while it runs (issue 5). They map one to one onto the
// PGBACKUPS_NICE ... PGBACKUPS_LOGICAL_LIMIT variables.
type NoStallOptions struct {
	Priority          Priority       // PGBACKUPS_NICE, PGBACKUPS_IONICE_CLASS
	BackendNice       int            // PGBACKUPS_BACKEND_NICE; 0 leaves the server backend alone
	MaxRate           int64          // PGBACKUPS_MAX_RATE in bytes/s of uncompressed dump; 0 is unlimited
	AutoRate          bool           // PGBACKUPS_MAX_RATE=auto: adapt the rate to the database's load
	OnBlocking        BlockingPolicy // PGBACKUPS_ON_BLOCKING; "" is warn
	BlockingThreshold time.Duration  // PGBACKUPS_BLOCKING_THRESHOLD; 0 is 10s
	LogicalLimit      int64          // PGBACKUPS_LOGICAL_LIMIT in bytes; 0 disables the size guard
	Logger            *slog.Logger
}

// NoStall is the set of mechanisms, built once and applied to each
// capture's options. Its parts are exported so a benchmark can tune them;
// a nil part is off. Captures using one NoStall must not overlap (they
// share the limiter), which the daemon's one-backup-at-a-time already
// guarantees.
type NoStall struct {
	Priority     Priority
	Backend      *BackendNice // lowers the dump's server backend; nil leaves it alone
	Limiter      *Limiter     // throttles pg_dump's output; nil when unlimited and not adaptive
	Adaptive     *Adaptive    // moves Limiter's limit with the load; nil for a fixed rate
	Watchdog     *Watchdog    // looks for sessions the dump blocks
	LogicalLimit int64
	Logger       *slog.Logger
}

// NewNoStall builds the mechanisms o asks for. The lock watchdog is always
// on: its default policy only warns.
func NewNoStall(o NoStallOptions) *NoStall {
	log := orDiscard(o.Logger)
	n := &NoStall{
		Priority:     o.Priority,
		Watchdog:     &Watchdog{Policy: o.OnBlocking, Threshold: o.BlockingThreshold, Logger: log},
		LogicalLimit: o.LogicalLimit,
		Logger:       log,
	}
	if o.BackendNice > 0 {
		n.Backend = &BackendNice{Nice: o.BackendNice, Logger: log}
	}
	switch {
	case o.AutoRate:
		n.Limiter = NewLimiter(DefaultAdaptiveFloor)
		n.Adaptive = &Adaptive{Limiter: n.Limiter, Logger: log}
	case o.MaxRate > 0:
		n.Limiter = NewLimiter(o.MaxRate)
	}
	return n
}

// RateLimit is the dump's current rate limit in bytes per second, 0 when
// unlimited: a gauge for metrics (it moves while an adaptive dump runs;
// between dumps it is the limit the next one starts at).
func (n *NoStall) RateLimit() int64 {
	if n.Limiter == nil {
		return 0
	}
	return n.Limiter.Limit()
}

// Blocking is how many sessions the running dump blocks (see
// Watchdog.Blocking): a gauge for metrics.
func (n *NoStall) Blocking() int {
	if n.Watchdog == nil {
		return 0
	}
	return n.Watchdog.Blocking()
}

// Apply installs the mechanisms in o's hooks, keeping hooks already set
// (they run first): Started lowers pg_dump's priority and Compressing that
// of the thread compressing its output, Throttle limits its rate, Monitors
// gain the server backend's priority, the adaptive rate and the watchdog,
// and LogicalLimit arms the size guard. The monitors watch the server
// pg_dump reads from (the standby, with DumpConn): that is where the dump's
// backend and its locks are, and where backpressure takes effect.
func (n *NoStall) Apply(o *CaptureOptions) {
	log := orDiscard(n.Logger)
	if !n.Priority.IsZero() {
		prev, p := o.Started, n.Priority
		o.Started = func(pid int, capLog *slog.Logger) {
			if prev != nil {
				prev(pid, capLog)
			}
			// Fail soft: a container's seccomp profile or a platform without
			// ioprio_set refuses, and the backup goes on at normal priority.
			if err := p.Apply(pid); err != nil {
				cmp.Or(capLog, log).Warn("pg_dump runs at normal priority", "pid", pid, "err", err)
			}
		}
		prevC := o.Compressing
		o.Compressing = func(capLog *slog.Logger) {
			if prevC != nil {
				prevC(capLog)
			}
			if err := p.ApplyThread(); err != nil {
				cmp.Or(capLog, log).Warn("the compressor runs at normal priority", "err", err)
			}
		}
	}
	if n.Limiter != nil {
		prev, l, a := o.Throttle, n.Limiter, n.Adaptive
		o.Throttle = func(r io.Reader) io.Reader {
			if prev != nil {
				r = prev(r)
			}
			if a != nil {
				// Where the monitor starts every dump, whichever of the
				// two runs first.
				l.SetLimit(a.withDefaults().Floor)
			}
			return l.Reader(r)
		}
	}
	o.Monitors = slices.Clip(o.Monitors)
	if n.Backend != nil {
		o.Monitors = append(o.Monitors, n.Backend.Watch)
	}
	if n.Adaptive != nil {
		o.Monitors = append(o.Monitors, n.Adaptive.Watch)
	}
	if n.Watchdog != nil {
		o.Monitors = append(o.Monitors, n.Watchdog.Watch)
	}
	if n.LogicalLimit > 0 {
		o.LogicalLimit = n.LogicalLimit
	}
}
