package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/sdnotify"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

var daemonCommand = command{
	name:    "daemon",
	summary: "back up on PGBACKUPS_SCHEDULE and serve /healthz and /metrics (runs when no command is given)",
	run: func(m *Main, ctx context.Context, args []string) error {
		if _, err := m.parseFlags(m.flags(), args, 0); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		d, err := m.newDaemon()
		if err != nil {
			return err
		}
		return d.Run(ctx)
	},
}

// newDaemon wires the daemon from the loaded configuration.
func (m *Main) newDaemon() (*daemon.Daemon, error) {
	cfg := m.cfg
	sched, err := schedule.Parse(cfg.Schedule)
	if err != nil {
		return nil, configError{fmt.Errorf("PGBACKUPS_SCHEDULE: %w", err)}
	}
	conn, err := m.conn()
	if err != nil {
		return nil, err
	}
	// What it backs up, and where to: a mistyped variable that left the
	// storage URL at its default shows here, not at the first restore.
	encryption := "none"
	rs, _ := m.cfg.Recipients()
	keys := dump.Recipients(rs).Names()
	if len(keys) > 0 {
		encryption = "age, to " + dump.ShortKeys(keys)
	}
	if m.cfg.AgeIdentityFile != "" {
		m.log.Warn("PGBACKUPS_AGE_IDENTITY_FILE is set where backups are taken: the daemon never reads it; keep the secret key only where you restore", "component", "daemon")
	}
	m.log.Info("backing up", "component", "daemon", "database", conn.String(), "storage", m.root(), "encryption", encryption)
	cat := m.catalog()
	ns := m.noStall() // one for every backup, so its gauges can be exported
	if _, err := m.captureOptions(conn, ns); err != nil {
		return nil, err // PGBACKUPS_DUMP_URL does not parse: say so at start-up
	}
	policy := schedule.Policy{KeepLast: cfg.KeepLast, KeepDaily: cfg.KeepDaily, KeepWeekly: cfg.KeepWeekly, KeepMonthly: cfg.KeepMonthly}
	if w := sameDayRetention(sched, policy); w != "" {
		m.log.Warn(w, "component", "daemon", "schedule", sched.String(), "keep_last", policy.KeepLast, "keep_daily", policy.KeepDaily)
	}
	return daemon.New(daemon.Options{
		Schedule: sched,
		Capture: func(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error) {
			o, err := m.captureOptions(conn, ns)
			if err != nil {
				return storage.Manifest{}, err
			}
			o.Progress = progress
			attempt, began := daemon.Attempt(ctx)
			o.Logger, o.Began = o.Logger.With("attempt", attempt), began
			return dump.Capture(ctx, o)
		},
		Prune: func(ctx context.Context) (int, int, error) {
			return prune(ctx, cat, storage.PruneOptions{
				Policy:   policy,
				Location: sched.Location(),
				Now:      time.Now(),
				Grace:    cfg.OrphanGrace.D(),
				Recheck:  lockedRecheck, // retention runs under the backup lock
			}, m.log.With("component", "retention"))
		},
		RetentionTimeout: cfg.StallTimeout.D(),
		Latest:           cat.Newest,
		// The lock is taken on DATABASE_URL, the primary, even when
		// PGBACKUPS_DUMP_URL sends pg_dump to a replica: every daemon
		// backing up this database sees the primary's lock table.
		Lock:          m.backupLock(conn),
		Logger:        m.log,
		HTTPAddr:      cfg.HTTPAddr,
		ShutdownGrace: cfg.ShutdownGrace.D(),
		Retry:         daemon.Retry{Max: cfg.RetryMax, Backoff: cfg.RetryBackoff.D(), MaxTime: cfg.RetryMaxTime.D()},
		WebhookURL:    cfg.WebhookURL,
		PingURL:       cfg.PingURL,
		HealthGrace:   cfg.HealthGrace.D(),
		LogicalLimit:  int64(cfg.LogicalLimit),
		EncryptsTo:    keys,
		Blocking:      ns.Blocking,
		RateLimit:     ns.RateLimit,
		Notify:        sdnotify.Notify,
		Version:       version,
	})
}

// backupLock is the advisory lock that keeps backups of one database into
// one storage location to one at a time, across daemons and manual captures.
func (m *Main) backupLock(conn dump.Conn) daemon.AdvisoryLock {
	return daemon.AdvisoryLock{Conn: conn, Key: daemon.LockKey(storageLocation(m.store, m.cfg.StorageURL), conn.ServerDatabase())}
}

// lockedRecheck is how long a prune under the backup lock trusts its check
// that the backups it keeps are still there (storage.PruneOptions.Recheck).
const lockedRecheck = 10 * time.Second

// sameDayRetention warns of a schedule that runs several times a day
// under a policy that keeps one backup a day (KEEP_LAST 0): each backup's
// retention deletes the one before it on the same day, so the extra runs
// buy nothing but load.
func sameDayRetention(s *schedule.Schedule, p schedule.Policy) string {
	if s == nil || s.Interval() <= 0 || s.Interval() >= 23*time.Hour || p.KeepLast > 0 {
		return ""
	}
	return "PGBACKUPS_SCHEDULE runs several times a day, but retention keeps at most one backup a day (PGBACKUPS_KEEP_LAST is 0): each backup's retention deletes the one before it on the same day; set PGBACKUPS_KEEP_LAST to the number of recent backups to keep"
}

// storageLocation names the store the same way however the URL was
// spelled ("/srv/b" and "file:///srv/b/"), so replicas agree on the lock.
// A directory is named with its symlinks resolved: a capture given
// /backups and a prune given /mnt/nas/backups, where the first links to
// the second, share one lock.
func storageLocation(st storage.Store, raw string) string {
	if f, ok := st.(*file.Store); ok {
		return f.Root
	}
	if d, ok := st.(storage.Describer); ok {
		return d.Location("")
	}
	return raw
}

// prune applies retention and logs what it removed and what it left alone
// without counting it as good.
func prune(ctx context.Context, cat storage.Catalog, o storage.PruneOptions, log *slog.Logger) (removed, leftAlone int, err error) {
	res, err := storage.Prune(ctx, cat, o)
	for _, p := range res.Removed {
		what := slog.String("backup", p.ID)
		if p.ID == "" {
			what = slog.String("key", p.Key) // an unfinished write
		}
		log.Info("retention removed", what, "reason", p.Reason, "stored_bytes", p.Bytes)
	}
	for _, note := range res.Notes {
		log.Info("retention note", "note", note)
	}
	for _, e := range res.Unreadable {
		log.Warn("retention left alone a backup it cannot count as good (unreadable manifest, damaged objects, or a start time ahead of the clock)", "backup", e.ID, "err", e.Err)
	}
	return len(res.Removed), len(res.Unreadable), err
}
