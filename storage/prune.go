package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
)

// PruneOptions says what Prune keeps.
type PruneOptions struct {
	// Policy decides which backups with a manifest are kept; see
	// schedule.Policy (the newest good backup always is).
	Policy schedule.Policy
	// Location is the calendar daily, weekly and monthly rules count in:
	// the schedule's time zone. Nil means UTC.
	Location *time.Location
	// Now is the current time, for Grace, and what backups' start times
	// are checked against (Manifest.CheckStart): one that starts after it
	// is left alone, not counted as the newest. Zero is the catalog's clock.
	Now time.Time
	// Grace protects objects without a manifest, and a file store's
	// temporary files, until they are this old: they may belong to a
	// capture still running.
	Grace time.Duration
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Recheck is how long a check that the kept backups are still there
	// holds before the next deletion asks again (one listing of the whole
	// store each). 0 checks before every deletion: a `pgbackups delete`
	// that takes no lock may land at any time. Under the backup lock,
	// which delete also takes where it can, a few seconds will do, and a
	// prune of a long backlog on S3 is not one listing per backup.
	Recheck time.Duration
}

// Why Prune removes something.
const (
	PruneRetention = "retention" // a good backup the policy does not keep
	PruneFailed    = "failed"    // a failed backup older than the newest good one
	PruneOrphan    = "orphan"    // objects with no manifest, older than the grace
	PruneTemporary = "temporary" // an unfinished write a crash left behind (a temporary file, an S3 multipart upload)
)

// Pruned is one thing Prune removed, or would remove in a dry run.
type Pruned struct {
	ID      string // the backup id; "" for a temporary file
	Key     string // the temporary file's key; "" for a backup
	Reason  string // one of the Prune* constants
	Objects int
	Bytes   int64
	Time    time.Time // the backup's start; for an orphan or a temporary file, when it was last written (Object.Modified)
}

// PruneResult is what Prune did.
type PruneResult struct {
	// Removed lists what was removed (with DryRun, what would be): a
	// deletion that failed is in the error instead.
	Removed []Pruned
	// Kept lists the retention decision for every backup kept, with why.
	Kept []schedule.Decision
	// Unreadable lists the backups Prune leaves alone because only a person
	// should decide about them, each with Err saying why: a manifest that
	// exists but cannot be read, or a completed backup whose objects are
	// missing or not the size its manifest records, or whose start time
	// is missing or ahead of Now (Entry.Damaged). None
	// of them counts as a good backup kept: retention keeps good ones as if
	// they were not there.
	Unreadable []Entry
	// Notes says what Prune could not do that is no failure of this pass:
	// a store that cannot list unfinished writes (no ListMultipartUploads).
	Notes []string
}

// TemporaryLister is a backend that can leave unfinished writes behind on
// a crash, and lists them (List does not): the file store's hidden
// temporary files, S3's incomplete multipart uploads (which the bucket
// bills for). An object's Modified is its last write.
type TemporaryLister interface {
	Temporaries(ctx context.Context) ([]Object, error)
}

// temporaryStore is a TemporaryLister that also removes them, for prune.
type temporaryStore interface {
	TemporaryLister
	RemoveTemporary(ctx context.Context, key string) error
}

// Prune applies retention to the catalog and removes what nothing refers
// to: good backups the policy does not keep, failed backups older than the
// newest good one, objects without a manifest (a capture that died before
// writing it) once older than the grace, and, on the file store, temporary
// files or S3 multipart uploads a crash left behind, also after the grace. Backups are deleted with
// Catalog.Delete, manifest first; an orphan's folder is listed again
// first and left if a manifest or a new object has arrived (removeOrphan).
// Prune goes on past a failed deletion and
// returns every error at the end, but removes no more backups once one it
// keeps is gone or damaged (a `pgbackups delete` beside it): the policy
// removed the others because that one stayed.
//
// The daemon calls it after each backup; `pgbackups prune` calls it on demand.
func Prune(ctx context.Context, cat Catalog, o PruneOptions) (PruneResult, error) {
	var res PruneResult
	if !o.Now.IsZero() {
		cat.Now = func() time.Time { return o.Now }
	}
	entries, err := cat.Entries(ctx)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	cutoff := o.Now.Add(-o.Grace)
	var backups []schedule.Backup
	byID := map[string]Entry{}
	for _, e := range entries {
		byID[e.ID] = e
		switch {
		case e.Err != nil:
			res.Unreadable = append(res.Unreadable, e)
		case e.Damaged != nil:
			// Counted as good, it could be the one "newest" or a KEEP_*
			// rule keeps in place of a backup that restores, or (a start
			// time ahead of the clock) of every backup taken after it.
			e.Err = e.Damaged
			res.Unreadable = append(res.Unreadable, e)
		case e.Manifest != nil:
			backups = append(backups, schedule.Backup{ID: e.ID, Time: e.Manifest.StartedAt, OK: e.Manifest.OK()})
		default:
			if newest := newestModified(e.Objects); newest.Before(cutoff) {
				res.Removed = append(res.Removed, pruned(e, PruneOrphan, newest))
			}
		}
	}
	for _, d := range o.Policy.Explain(backups, o.Location) {
		if d.Keep {
			res.Kept = append(res.Kept, d)
			continue
		}
		reason := PruneRetention
		if !d.OK {
			reason = PruneFailed
		}
		res.Removed = append(res.Removed, pruned(byID[d.ID], reason, d.Time))
	}
	var errs []error
	var temps temporaryStore
	if ts, ok := cat.Store.(temporaryStore); ok {
		temps = ts
		// Best effort: a store that cannot list its unfinished writes (an
		// S3 policy without s3:ListBucketMultipartUploads, a server that
		// does not implement it) must not stop retention.
		objs, err := ts.Temporaries(ctx)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			// The store will never list them: failing every pass for it
			// would only teach the operator to ignore prune's errors.
			res.Notes = append(res.Notes, "unfinished writes not collected: "+err.Error())
		case err != nil:
			errs = append(errs, fmt.Errorf("prune: list unfinished writes: %w", err))
		}
		young := 0
		for _, o := range objs {
			if o.Modified.Before(cutoff) {
				res.Removed = append(res.Removed, Pruned{Key: o.Key, Reason: PruneTemporary, Objects: 1, Bytes: o.Size, Time: o.Modified})
			} else {
				young++
			}
		}
		if young > 0 {
			// Said, so that an operator looking for a killed capture's
			// upload learns why it is still there.
			writes := "writes"
			if young == 1 {
				writes = "write"
			}
			res.Notes = append(res.Notes, fmt.Sprintf("left %d unfinished %s (temporary files, S3 multipart uploads) written to more recently than the grace: a capture may still be writing; they go once nothing has written to them for PGBACKUPS_ORPHAN_GRACE",
				young, writes))
		}
	}
	if o.DryRun {
		return res, errors.Join(errs...)
	}
	// From here Removed says what was removed, not what was meant to be.
	planned := res.Removed
	res.Removed = nil
	var keptGone error // set once a backup retention keeps is found gone
	var checked time.Time
	for _, p := range planned {
		if err := ctx.Err(); err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		var err error
		switch {
		case p.Reason == PruneRetention || p.Reason == PruneFailed:
			// These go because of the good backups kept: a `pgbackups
			// delete` beside this prune may have removed one since the
			// listing (the newest, say), and then deleting the rest would
			// leave fewer than the policy keeps, or none at all.
			if keptGone == nil && (o.Recheck <= 0 || time.Since(checked) >= o.Recheck) {
				checked = time.Now()
				keptGone = keptStill(ctx, cat, res.Kept, byID)
				if keptGone != nil {
					errs = append(errs, keptGone)
				}
			}
			if keptGone != nil {
				continue
			}
			err = cat.Delete(ctx, p.ID)
		case p.Reason == PruneOrphan:
			var left string
			p, left, err = removeOrphan(ctx, cat.Store, p, cutoff)
			if left != "" {
				res.Notes = append(res.Notes, left)
				continue
			}
		case p.ID != "":
			err = cat.Delete(ctx, p.ID)
		default:
			err = temps.RemoveTemporary(ctx, p.Key)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("prune %s%s: %w", p.ID, p.Key, err))
			continue
		}
		res.Removed = append(res.Removed, p)
	}
	return res, errors.Join(errs...)
}

// removeOrphan removes what backup p.ID's folder holds now, if it is
// still an orphan older than cutoff, and returns p counting what it
// removed. The listing Prune decided on may be minutes old: a copy of a
// backup (data first, manifest last) or a capture may have written to the
// folder since. So the folder is listed again, and left, with a note
// saying why, once it holds a manifest or an object written after cutoff.
// Only the objects that listing shows are removed, never through
// Catalog.Delete, which lists the folder again itself and takes the
// manifest first: a manifest that arrives in between is left. Should one
// arrive while the rest goes, the backup it describes has lost objects,
// and the error says so.
func removeOrphan(ctx context.Context, st Store, p Pruned, cutoff time.Time) (Pruned, string, error) {
	objs, err := st.List(ctx, p.ID+"/")
	if err != nil {
		return p, "", err
	}
	objs = byBackup(objs)[p.ID] // not what someone nested deeper in the folder
	newest := newestModified(objs)
	switch {
	case len(objs) == 0:
		return p, "", ErrNotFound // removed beside this prune
	case holdsManifest(objs, p.ID):
		return p, fmt.Sprintf("left %s: a manifest was written to it while prune ran, so it is no orphan", p.ID), nil
	case !newest.Before(cutoff):
		return p, fmt.Sprintf("left %s: written to at %s, while prune ran, so a capture or a copy may be writing it", p.ID, newest.Format(time.RFC3339)), nil
	}
	removed := Pruned{ID: p.ID, Reason: p.Reason, Time: newest}
	var errs []error
	for _, o := range objs {
		err := st.Delete(ctx, o.Key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed.Objects++
		removed.Bytes += o.Size
	}
	if after, err := st.List(ctx, p.ID+"/"); err == nil && holdsManifest(after, p.ID) {
		errs = append(errs, fmt.Errorf("a manifest was written to it while its objects were removed as an orphan's: check it with `pgbackups verify %s`", p.ID))
	}
	return removed, "", errors.Join(errs...)
}

// keptStill lists the store again and reports a good backup in kept
// whose manifest is gone since Prune read it, or whose objects now show
// damage: retention's decisions stand only while those it kept are there.
func keptStill(ctx context.Context, cat Catalog, kept []schedule.Decision, byID map[string]Entry) error {
	objs, err := cat.Store.List(ctx, "")
	if err != nil {
		return fmt.Errorf("prune: check that the backups kept are still there: %w; removed no more backups", err)
	}
	folders := byBackup(objs)
	for _, d := range kept {
		m := byID[d.ID].Manifest
		if !d.OK || m == nil {
			continue
		}
		objs := folders[d.ID]
		if !holdsManifest(objs, d.ID) {
			return fmt.Errorf("prune: backup %s, which retention keeps, was deleted while prune ran; removed no more backups: prune again", d.ID)
		}
		if err := damage(*m, objs, true); err != nil {
			return fmt.Errorf("prune: backup %s, which retention keeps, changed while prune ran (%v); removed no more backups: prune again", d.ID, err)
		}
	}
	return nil
}

func pruned(e Entry, reason string, t time.Time) Pruned {
	p := Pruned{ID: e.ID, Reason: reason, Objects: len(e.Objects), Time: t}
	for _, o := range e.Objects {
		p.Bytes += o.Size
	}
	return p
}

func newestModified(objs []Object) time.Time {
	var t time.Time
	for _, o := range objs {
		if o.Modified.After(t) {
			t = o.Modified
		}
	}
	return t
}
