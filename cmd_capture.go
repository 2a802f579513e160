package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/storage"
)

var captureCommand = command{
	name:    "capture",
	summary: "take a backup now; prints the new backup's id as the last line",
	args:    "[--new-cluster] [--new-database]",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		newCluster := fs.Bool("new-cluster", false, "accept that this database's cluster changed (pg_upgrade, a managed major-version upgrade, a restore into a new instance): this location's newest backup is of another cluster")
		newDatabase := fs.Bool("new-database", false, "accept that the database was dropped and re-created, or emptied, since this location's newest backup (a restore into it is done, or it is meant to be empty)")
		if _, err := m.parseFlags(fs, args, 0); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		// This process exists for one backup, so it may lower itself for
		// good, upload included. The daemon lowers only pg_dump and the
		// compressor's thread (see dump.Priority.ApplySelf).
		if err := m.priority().ApplySelf(); err != nil {
			m.log.Warn("pgbackups runs at normal priority", "component", "capture", "err", err)
		}
		man, err := m.capture(ctx, *newCluster, *newDatabase)
		if err != nil && m.cfg != nil && m.cfg.DatabaseURL == "" && strings.Contains(err.Error(), "connect to database") {
			// Nothing named a database: say what was tried instead.
			err = fmt.Errorf("%w (PGBACKUPS_DATABASE_URL and DATABASE_URL are unset, so libpq's PGHOST/PGUSER/PGDATABASE variables and defaults were used)", err)
		}
		if err != nil {
			return err
		}
		sealed := ""
		if man.Encryption != "" {
			sealed = fmt.Sprintf(" (%s-encrypted to %s)", man.Encryption, plural(len(man.EncryptedTo), "key"))
		}
		fmt.Fprintf(m.Stderr, "backup %s of %s: %s dump, %s stored%s in %s, %s\n", man.ID, man.Database,
			config.HumanBytes(man.DumpBytes), config.HumanBytes(man.StoredBytes), sealed, m.root(), man.Duration().Round(1e6))
		fmt.Fprintln(m.Stdout, man.ID)
		return nil
	},
}

// capture takes one backup with the loaded configuration.
func (m *Main) capture(ctx context.Context, newCluster, newDatabase bool) (storage.Manifest, error) {
	conn, err := m.conn()
	if err != nil {
		return storage.Manifest{}, err
	}
	o, err := m.captureOptions(conn, m.noStall())
	if err != nil {
		return storage.Manifest{}, err
	}
	o.NewCluster, o.NewDatabase = newCluster, newDatabase
	// The same lock the daemon takes: a manual capture never runs beside a
	// scheduled one (or another manual one) into the same storage.
	// If the lock is lost mid-backup, locked is cancelled and the capture
	// aborts rather than run beside another one.
	locked, release, err := m.backupLock(conn).Hold(ctx)
	var held *daemon.HeldError
	switch {
	case errors.As(err, &held):
		return storage.Manifest{}, fmt.Errorf("not starting a second backup: %w", err)
	case err != nil:
		return storage.Manifest{}, err // "connect to ... (taking the backup lock)"
	}
	defer release()
	man, err := dump.Capture(locked, o)
	if err != nil {
		return storage.Manifest{}, err
	}
	m.log.Info("backup completed", "component", "capture", "backup", man.ID, "database", man.Database,
		"dump_bytes", man.DumpBytes, "stored_bytes", man.StoredBytes,
		"duration_seconds", float64(man.Duration().Milliseconds())/1000, "rate_bytes_per_second", rate(man.DumpBytes, man))
	return man, nil
}

// captureOptions turns the configuration into dump.CaptureOptions, with
// ns's no-stall mechanisms (built once by m.noStall, so a long-running
// caller can read its gauges).
func (m *Main) captureOptions(conn dump.Conn, ns *dump.NoStall) (dump.CaptureOptions, error) {
	o := dump.CaptureOptions{
		Conn:             conn,
		Store:            m.store,
		PgBinDir:         m.cfg.PgBinDir,
		CompressionLevel: m.cfg.CompressionLevel,
		LockWaitTimeout:  m.cfg.LockWaitTimeout.D(),
		StallTimeout:     m.cfg.StallTimeout.D(),
		Logger:           m.log.With("component", "capture"),
		Version:          version,
		SkipGlobals:      !m.cfg.Globals,
	}
	rs, err := m.cfg.Recipients()
	if err != nil {
		return o, configError{fmt.Errorf("PGBACKUPS_AGE_RECIPIENTS: %w", err)}
	}
	o.Recipients = rs
	if m.cfg.DumpURL != "" {
		dc, err := dump.ParseConn(m.cfg.DumpURL)
		if err != nil {
			return o, configError{fmt.Errorf("PGBACKUPS_DUMP_URL: %w", err)}
		}
		o.DumpConn = &dc
	}
	ns.Apply(&o)
	return o, nil
}

// noStall builds issue 5's mechanisms from the configuration: priority,
// rate limit (fixed or adaptive), lock watchdog and size guard.
func (m *Main) noStall() *dump.NoStall {
	return dump.NewNoStall(dump.NoStallOptions{
		Priority:          m.priority(),
		BackendNice:       m.cfg.BackendNice,
		MaxRate:           m.cfg.MaxRate.BytesPerSecond,
		AutoRate:          m.cfg.MaxRate.Auto,
		OnBlocking:        dump.BlockingPolicy(m.cfg.OnBlocking),
		BlockingThreshold: m.cfg.BlockingThreshold.D(),
		LogicalLimit:      int64(m.cfg.LogicalLimit),
		Logger:            m.log.With("component", "capture"),
	})
}

// priority is PGBACKUPS_NICE and PGBACKUPS_IONICE_CLASS.
func (m *Main) priority() dump.Priority {
	class, level, _ := config.ParseIONice(m.cfg.IONiceClass) // config.Load validated it
	return dump.Priority{Nice: m.cfg.Nice, IOClass: class, IOLevel: level}
}

func rate(n int64, man storage.Manifest) int64 {
	d := man.Duration().Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d)
}
