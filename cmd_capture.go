package main

import (
	"context"
	"fmt"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/storage"
)

var captureCommand = command{
	name:    "capture",
	summary: "take a backup now; prints the new backup's id as the last line",
	run: func(m *Main, ctx context.Context, args []string) error {
		if _, err := m.parseFlags(m.flags(), args, 0); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		man, err := m.capture(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "backup %s of %s: %s dump, %s stored, %s\n", man.ID, man.Database,
			config.HumanBytes(man.DumpBytes), config.HumanBytes(man.StoredBytes), man.Duration().Round(1e6))
		fmt.Fprintln(m.Stdout, man.ID)
		return nil
	},
}

// capture takes one backup with the loaded configuration.
func (m *Main) capture(ctx context.Context) (storage.Manifest, error) {
	conn, err := m.conn()
	if err != nil {
		return storage.Manifest{}, err
	}
	man, err := dump.Capture(ctx, m.captureOptions(conn))
	if err != nil {
		return storage.Manifest{}, err
	}
	m.log.Info("backup completed", "backup", man.ID, "database", man.Database,
		"dump_bytes", man.DumpBytes, "stored_bytes", man.StoredBytes,
		"duration", man.Duration().String(), "rate_bytes_per_second", rate(man.DumpBytes, man))
	return man, nil
}

// captureOptions turns the configuration into dump.CaptureOptions.
func (m *Main) captureOptions(conn dump.Conn) dump.CaptureOptions {
	return dump.CaptureOptions{
		Conn:             conn,
		Store:            m.store,
		PgBinDir:         m.cfg.PgBinDir,
		CompressionLevel: m.cfg.CompressionLevel,
		LockWaitTimeout:  m.cfg.LockWaitTimeout.D(),
		Logger:           m.log.With("component", "capture"),
		Version:          version,
	}
}

func rate(n int64, man storage.Manifest) int64 {
	d := man.Duration().Seconds()
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d)
}
