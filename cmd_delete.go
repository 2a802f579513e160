package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

var deleteCommand = command{
	name:    "delete",
	args:    "ID --confirm ID",
	summary: "remove one backup, manifest first",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		confirm := fs.String("confirm", "", "the backup `ID`, repeated: deleting cannot be undone")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usagef("name the backup to delete (`pgbackups list --all` shows ids)")
		}
		id := pos[0]
		if !storage.ValidID(id) {
			return usagef("%s is not a backup id (they look like 20261125-020000-k3f9); delete takes an exact id, never latest", shown(id))
		}
		switch *confirm {
		case id:
		case "":
			return usagef("deleting backup %s cannot be undone: repeat its id with --confirm %s", id, id)
		default:
			return usagef("--confirm %s does not match backup %s; nothing was deleted: repeat its id with --confirm %s", *confirm, id, id)
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		// Under the backup lock, as capture and prune: no capture is
		// writing the backup, and no prune is deciding what to keep from a
		// listing that still shows it. Only on a database named outright:
		// the lock's key holds no server, so one taken through libpq's
		// defaults (a local server, PGHOST left in a shell) would be free
		// whatever production's daemon writes. Without it (a restore-only
		// machine), a backup with no manifest whose objects are recent may
		// be a capture's, and is left alone.
		var release func()
		lockErr := errors.New("PGBACKUPS_DATABASE_URL (or DATABASE_URL) is unset")
		if m.cfg.DatabaseURL != "" {
			release, lockErr = m.pruneLock(ctx)
		}
		var held *daemon.HeldError
		switch {
		case errors.As(lockErr, &held):
			return fmt.Errorf("a backup or prune is running (%w); nothing was deleted: delete again when it has finished", lockErr)
		case lockErr != nil:
			fmt.Fprintf(m.Stderr, "delete: cannot take the backup lock (%v); a backup without a manifest written to in the last PGBACKUPS_ORPHAN_GRACE is left alone\n", lockErr)
		default:
			defer release()
		}
		objs, err := m.store.List(ctx, id+"/")
		if err != nil {
			return err
		}
		if lockErr != nil {
			if err := m.captureWriting(id, objs, time.Now()); err != nil {
				return err
			}
		}
		if err := m.catalog().Delete(ctx, id); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				if lockErr != nil {
					if err := m.beingWritten(ctx, id, time.Now()); err != nil {
						return err
					}
				}
				return m.noSuchBackup(ctx, id)
			}
			return err
		}
		var size int64
		for _, o := range objs {
			size += o.Size
		}
		fmt.Fprintf(m.Stderr, "deleted backup %s: %d objects, %s\n", id, len(objs), config.HumanBytes(size))
		m.log.Info("backup deleted", "component", "delete", "backup", id, "objects", len(objs), "stored_bytes", size)
		return nil
	},
}

// lastWrite is the newest Modified of the objects keep accepts (zero for
// none), and how long ago it was.
func lastWrite(objs []storage.Object, keep func(storage.Object) bool, now time.Time) (time.Time, time.Duration) {
	var newest time.Time
	for _, o := range objs {
		if keep(o) && o.Modified.After(newest) {
			newest = o.Modified
		}
	}
	return newest, now.Sub(newest)
}

// captureWriting refuses to delete id, listed as objs, while a capture
// may still be writing it: no manifest yet, and an object younger than
// PGBACKUPS_ORPHAN_GRACE, the age prune waits for. Deleting its data then
// fails that capture ("vanished before its manifest was written") or, a
// moment later, leaves a completed manifest over a missing data object.
func (m *Main) captureWriting(id string, objs []storage.Object, now time.Time) error {
	if slices.ContainsFunc(objs, func(o storage.Object) bool { return o.Key == storage.ManifestKey(id) }) {
		return nil // a backup, complete or failed: delete it
	}
	newest, age := lastWrite(objs, func(storage.Object) bool { return true }, now)
	grace := m.cfg.OrphanGrace.D()
	if newest.IsZero() || age >= grace {
		return nil
	}
	return fmt.Errorf("backup %s has no manifest yet and was written to %s ago: a capture may still be writing it, so nothing was deleted. A capture that finishes lists it in `pgbackups list`; if none is running, run delete with PGBACKUPS_DATABASE_URL set (it then takes the backup lock and can tell), or `pgbackups prune` removes it once it is %s old (PGBACKUPS_ORPHAN_GRACE)",
		id, age.Round(time.Second), grace)
}

// beingWritten says, for an id storage lists nothing of, whether a capture
// may be uploading it now: an unfinished write of it younger than
// PGBACKUPS_ORPHAN_GRACE. Without it, delete of the id a capture logged
// said "no such backup", and the backup appeared after.
func (m *Main) beingWritten(ctx context.Context, id string, now time.Time) error {
	st, ok := m.store.(storage.TemporaryLister)
	if !ok {
		return nil
	}
	temps, err := st.Temporaries(ctx)
	if err != nil {
		return nil // best effort: an S3 policy without s3:ListBucketMultipartUploads
	}
	newest, age := lastWrite(temps, func(o storage.Object) bool { return strings.HasPrefix(o.Key, id+"/") }, now)
	if newest.IsZero() || age >= m.cfg.OrphanGrace.D() {
		return nil
	}
	return fmt.Errorf("backup %s: no such backup yet: a capture may be writing it now (an unfinished write of it, %s old); nothing was deleted. A capture that finishes lists it in `pgbackups list`; if none is running, run delete with PGBACKUPS_DATABASE_URL set (it then takes the backup lock and can tell)",
		id, age.Round(time.Second))
}

var pruneCommand = command{
	name:    "prune",
	args:    "[--dry-run]",
	summary: "apply retention (PGBACKUPS_KEEP_*) and remove orphaned objects",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		dryRun := fs.Bool("dry-run", false, "list what would be removed and remove nothing")
		if _, err := m.parseFlags(fs, args, 0); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		opts, err := m.pruneOptions(time.Now())
		if err != nil {
			return err
		}
		opts.DryRun = *dryRun
		// Hold the backup lock so no capture is between its data and its
		// manifest while orphans are collected. Without the database (a
		// restore-only machine), prune still applies retention, which only
		// touches completed backups, but leaves objects without a manifest.
		release, lockErr := m.pruneLock(ctx)
		var held *daemon.HeldError
		switch {
		case errors.As(lockErr, &held):
			return fmt.Errorf("a backup is running (%w); prune again when it has finished", lockErr)
		case lockErr != nil:
			fmt.Fprintf(m.Stderr, "prune: cannot take the backup lock (%v); keeping objects without a manifest\n", lockErr)
			opts.Grace = orphansUntouched
		default:
			defer release()
			if m.cfg.DatabaseURL != "" {
				// A lock taken through libpq's defaults excludes nothing
				// (its key holds no server): check before every deletion.
				opts.Recheck = lockedRecheck
			}
		}
		res, err := storage.Prune(ctx, m.catalog(), opts)
		m.printPrune(res, *dryRun, err)
		return err
	},
}

// orphansUntouched is a grace no object outlives: orphan removal is off.
const orphansUntouched = 100 * 365 * 24 * time.Hour

// pruneLock takes the backup lock for a manual prune.
func (m *Main) pruneLock(ctx context.Context) (func(), error) {
	conn, err := m.conn()
	if err != nil {
		return nil, err
	}
	return m.backupLock(conn).TryLock(ctx)
}

// pruneOptions turns the configuration into storage.PruneOptions: the
// KEEP_* counts, days counted in the schedule's time zone (the machine's
// when there is no schedule), and ORPHAN_GRACE.
func (m *Main) pruneOptions(now time.Time) (storage.PruneOptions, error) {
	c := m.cfg
	policy := schedule.Policy{KeepLast: c.KeepLast, KeepDaily: c.KeepDaily, KeepWeekly: c.KeepWeekly, KeepMonthly: c.KeepMonthly}
	loc := time.Local
	if c.Schedule != "" {
		s, err := schedule.Parse(c.Schedule)
		if err != nil {
			return storage.PruneOptions{}, configError{fmt.Errorf("PGBACKUPS_SCHEDULE: %w", err)}
		}
		loc = s.Location()
	}
	return storage.PruneOptions{Policy: policy, Location: loc, Now: now, Grace: c.OrphanGrace.D()}, nil
}

// err is the pass's error: the summary then says it did not complete.
func (m *Main) printPrune(res storage.PruneResult, dryRun bool, err error) {
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	var n int
	var bytes int64
	for _, p := range res.Removed {
		what := p.ID
		if what == "" {
			what = p.Key
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", verb, what, p.Reason, p.Time.Local().Format("2006-01-02 15:04 MST"), config.HumanBytes(p.Bytes))
		n++
		bytes += p.Bytes
	}
	for _, d := range res.Kept {
		fmt.Fprintf(tw, "keep\t%s\t%s\t%s\t\n", d.ID, strings.Join(d.Reasons, ","), d.Time.Local().Format("2006-01-02 15:04 MST"))
	}
	tw.Flush()
	for _, e := range res.Unreadable {
		if errors.Is(e.Damaged, storage.ErrStartTime) {
			// Its data may well be good, and the newest: no delete hint.
			fmt.Fprintf(m.Stderr, "left alone: %s is not counted as a good backup until this host's clock reaches its start (%v); fix the clock of the host that took it\n", e.ID, e.Err)
			continue
		}
		what := "has a manifest that cannot be read"
		if e.Damaged != nil {
			what = "is not counted as a good backup"
		}
		fmt.Fprintf(m.Stderr, "left alone: %s %s (%v); inspect it, then `pgbackups delete %s --confirm %s`\n", e.ID, what, e.Err, e.ID, e.ID)
	}
	for _, note := range res.Notes {
		fmt.Fprintf(m.Stderr, "note: %s\n", note)
	}
	if err != nil {
		// Not a summary of a pass that worked: the error follows.
		fmt.Fprintf(m.Stderr, "prune did not complete: %s %s (%s) before it stopped\n", verb, plural(n, "item"), config.HumanBytes(bytes))
		return
	}
	fmt.Fprintf(m.Stderr, "%s %s (%s), kept %s\n", verb, plural(n, "item"), config.HumanBytes(bytes), plural(len(res.Kept), "backup"))
	if !dryRun {
		m.log.Info("prune completed", "component", "prune", "removed", n, "stored_bytes", bytes, "kept", len(res.Kept), "left_alone", len(res.Unreadable))
	}
}

// plural is "1 item" or "2 items".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
