package daemon

import (
	"context"
	"errors"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pgbackups/pgbackups/storage"
)

// Backup results, the values of pgbackups_backups_total's result label.
const (
	resultSuccess = "success"
	resultFailure = "failure"
	resultSkipped = "skipped" // another process held the lock
	// Not a metric label: a run taken over from a lock holder that turned
	// out, once the lock was held, to have stored a backup after all.
	resultFollowed = "followed"
)

// metrics live on the daemon's own registry: nothing global, so tests can
// build as many daemons as they like.
type metrics struct {
	reg *prometheus.Registry

	lastSuccess      prometheus.Gauge
	lastFailure      prometheus.Gauge
	lastDuration     prometheus.Gauge
	lastDumpBytes    prometheus.Gauge
	lastStoredBytes  prometheus.Gauge
	databaseBytes    prometheus.Gauge
	overLogicalLimit prometheus.Gauge
	backups          *prometheus.CounterVec
	inProgress       prometheus.Gauge
	retentionDeleted prometheus.Counter
	retentionErrors  prometheus.Counter
	leftAlone        prometheus.Gauge
	retentionSuccess prometheus.Gauge
	retentionFailure prometheus.Gauge
	blockingAborts   prometheus.Counter
}

func newMetrics(d *Daemon) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_last_success_timestamp_seconds",
			Help: "When the newest completed backup finished (Unix time); read from storage at start-up. 0 when none is known (none yet, or storage could not be read at start-up).",
		}),
		lastFailure: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_last_failure_timestamp_seconds",
			Help: "When the last failed backup attempt ended (Unix time): this daemon's, or, read from storage at start-up, a failed backup newer than the last success. 0 when none.",
		}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_last_duration_seconds",
			Help: "How long the newest completed backup took.",
		}),
		lastDumpBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_last_dump_bytes",
			Help: "Uncompressed pg_dump archive size of the newest completed backup.",
		}),
		lastStoredBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_last_stored_bytes",
			Help: "Stored (compressed) size of the newest completed backup.",
		}),
		databaseBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_database_bytes",
			Help: "pg_database_size when the newest completed backup started.",
		}),
		overLogicalLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_database_over_logical_limit",
			Help: "1 when the database is larger than PGBACKUPS_LOGICAL_LIMIT: use physical backups for it.",
		}),
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgbackups_backups_total",
			Help: "Backup attempts by result: success, failure, or skipped because another pgbackups held the lock.",
		}, []string{"result"}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_backup_in_progress",
			Help: "1 while a backup runs.",
		}),
		retentionDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgbackups_retention_deleted_total",
			Help: "Backups and orphaned objects removed by retention after a backup.",
		}),
		retentionErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgbackups_retention_errors_total",
			Help: "Retention runs that did not complete.",
		}),
		leftAlone: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_retention_left_alone",
			Help: "Backups the last retention pass that listed storage left alone and did not count as good: a manifest it cannot read, objects storage lists as missing or cut short, or a start time ahead of the clock (misdated). They take space until someone looks (pgbackups list) and deletes them or fixes the clock. A pass that fails before it can tell keeps the count; pgbackups_retention_last_success_timestamp_seconds says how old a complete count is.",
		}),
		retentionSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_retention_last_success_timestamp_seconds",
			Help: "When this daemon's last retention pass that completed ended (Unix time). 0 when none since start-up.",
		}),
		retentionFailure: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgbackups_retention_last_failure_timestamp_seconds",
			Help: "When this daemon's last retention pass that did not complete ended (Unix time). 0 when none since start-up.",
		}),
		blockingAborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgbackups_blocking_aborts_total",
			Help: "Backups stopped because they blocked other sessions (PGBACKUPS_ON_BLOCKING=abort).",
		}),
	}
	for _, r := range []string{resultSuccess, resultFailure, resultSkipped} {
		m.backups.WithLabelValues(r) // export zeros: rate() needs a first sample
	}
	reg.MustRegister(
		m.lastSuccess, m.lastFailure, m.lastDuration, m.lastDumpBytes, m.lastStoredBytes,
		m.databaseBytes, m.overLogicalLimit, m.backups, m.inProgress,
		m.retentionDeleted, m.retentionErrors, m.leftAlone, m.retentionSuccess, m.retentionFailure, m.blockingAborts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_consecutive_failures",
			Help: "Failed backup attempts (retries included) since the last success; skipped runs do not count. After a restart, 1 when the newest backup in storage failed, else 0.",
		}, func() float64 { return float64(d.state.consecutiveFailures()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_current_backup_bytes",
			Help: "Uncompressed dump bytes the running backup has produced so far; 0 when none runs.",
		}, func() float64 { return float64(d.progress.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_next_run_timestamp_seconds",
			Help: "When the next scheduled backup runs (Unix time); 0 without a schedule.",
		}, func() float64 {
			next := d.opts.Schedule.Next(d.now())
			if next.IsZero() {
				return 0
			}
			return float64(next.Unix())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_healthy",
			Help: "1 when /healthz answers 200.",
		}, func() float64 {
			if d.state.healthy(d.now()) {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pgbackups_build_info",
			Help:        "Always 1; the labels say which pgbackups runs.",
			ConstLabels: prometheus.Labels{"version": d.opts.Version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if f := d.opts.Blocking; f != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_blocked_sessions",
			Help: "Sessions the running dump blocks, directly or queued behind them.",
		}, func() float64 { return float64(f()) }))
	}
	if f := d.opts.RateLimit; f != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pgbackups_rate_limit_bytes_per_second",
			Help: "The dump's rate limit (PGBACKUPS_MAX_RATE) while one runs, else the limit the next starts at; 0 when unlimited.",
		}, func() float64 { return float64(f()) }))
	}
	m.observe(d)
	return m
}

// observe wraps the daemon's two readers of storage, Prune and Latest, so
// that what they find reaches /healthz and /metrics whoever calls them:
// the end and outcome of every retention pass (a failed pass must not
// leave an old pgbackups_retention_left_alone looking current), and
// whether the newest backups could be read at all (a daemon that could
// not read them at start-up does not know its last success, which is not
// the same as having none).
func (m *metrics) observe(d *Daemon) {
	if prune := d.opts.Prune; prune != nil {
		d.opts.Prune = func(ctx context.Context) (int, int, error) {
			removed, alone, err := prune(ctx)
			at := d.now()
			r := &Retention{At: at, Removed: removed}
			if err == nil || alone > 0 {
				r.LeftAlone = &alone // counted: the pass listed storage
			}
			if err != nil {
				r.Error = err.Error()
				// The pass's own deadline (RetentionTimeout) says more
				// than "context deadline exceeded".
				if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(err, cause) {
					r.Error = cause.Error() + " (" + r.Error + ")"
				}
				m.retentionFailure.Set(float64(at.UnixNano()) / 1e9)
			} else {
				m.retentionSuccess.Set(float64(at.UnixNano()) / 1e9)
			}
			d.state.retained(r)
			return removed, alone, err
		}
	}
	if latest := d.opts.Latest; latest != nil {
		d.opts.Latest = func(ctx context.Context) (storage.Manifest, *storage.Manifest, error) {
			completed, failed, err := latest(ctx)
			if errors.Is(err, storage.ErrNoBackups) {
				d.state.readLatest(nil)
			} else {
				d.state.readLatest(err)
			}
			return completed, failed, err
		}
	}
}

// success records the newest completed backup, whoever took it.
func (m *metrics) success(s *Success, databaseBytes int64, overLimit bool) {
	m.lastSuccess.Set(float64(s.FinishedAt.UnixNano()) / 1e9)
	m.lastDuration.Set(s.Duration)
	m.lastDumpBytes.Set(float64(s.DumpBytes))
	m.lastStoredBytes.Set(float64(s.StoredBytes))
	m.databaseBytes.Set(float64(databaseBytes))
	if overLimit {
		m.overLogicalLimit.Set(1)
	} else {
		m.overLogicalLimit.Set(0)
	}
}
