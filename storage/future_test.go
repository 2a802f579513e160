package storage_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// putBackup stores a completed backup with an id of idAt and a manifest
// saying it started at started (zero: none recorded).
func putBackup(t *testing.T, st *file.Store, idAt, started time.Time) string {
	t.Helper()
	ctx := context.Background()
	id := storage.NewID(idAt)
	n, err := st.Put(ctx, storage.DataKey(id), strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	m := storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: started, DataKey: storage.DataKey(id), StoredBytes: n,
		SHA256: strings.Repeat("a", 64), DumpSHA256: strings.Repeat("b", 64)}
	if !started.IsZero() {
		m.FinishedAt = started.Add(time.Minute)
	}
	if err := (storage.Catalog{Store: st}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return id
}

func hasManifest(st *file.Store, id string) bool {
	_, err := os.Stat(st.Location(storage.ManifestKey(id)))
	return err == nil
}

// A backup stamped after this host's clock (a replica whose clock runs
// ahead; its id comes from the same clock) or with no start time cannot be
// ranked: counted as good, it would be the newest retention always keeps
// while each backup after it is deleted, or the oldest it deletes first.
// Prune leaves it alone and keeps the real ones as if it were not there.
func TestPruneLeavesMisdatedBackupsAlone(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	type backup struct {
		name         string
		idAt, start  time.Time
		misdated     bool // left alone, its problem wrapping ErrStartTime
		removed, new bool // retention removes it; it is the newest kept
	}
	for _, tc := range []struct {
		name    string
		policy  schedule.Policy
		backups []backup
	}{
		{
			// A clock 30 days ahead, once: with KEEP_LAST=1 the backup
			// just taken was deleted by its own retention.
			name:   "30 days ahead, KEEP_LAST=1",
			policy: schedule.Policy{KeepLast: 1},
			backups: []backup{
				{name: "future", idAt: now.Add(30 * 24 * time.Hour), start: now.Add(30 * 24 * time.Hour), misdated: true},
				{name: "just taken", idAt: now, start: now, new: true},
				{name: "yesterday", idAt: now.Add(-24 * time.Hour), start: now.Add(-24 * time.Hour), removed: true},
			},
		},
		{
			// Taken at 09:30 by a replica an hour ahead, stamped 10:30:
			// one a day, and the real 10:00 backup of the day was deleted.
			name:   "replica 1h ahead, default policy",
			policy: schedule.DefaultPolicy(),
			backups: []backup{
				{name: "skewed", idAt: now.Add(30 * time.Minute), start: now.Add(30 * time.Minute), misdated: true},
				{name: "real", idAt: now, start: now, new: true},
			},
		},
		{
			// Ordinary skew between hosts: taken at its word.
			name:   "5 minutes ahead, within the tolerance",
			policy: schedule.Policy{KeepLast: 1},
			backups: []backup{
				{name: "slightly ahead", idAt: now.Add(5 * time.Minute), start: now.Add(5 * time.Minute), new: true},
				{name: "before it", idAt: now.Add(-time.Minute), start: now.Add(-time.Minute), removed: true},
			},
		},
		{
			// No start time ranks as year 1: the first retention deletes.
			name:   "no start time",
			policy: schedule.Policy{KeepLast: 1},
			backups: []backup{
				{name: "real", idAt: now, start: now, new: true},
				{name: "undated", idAt: now.Add(-time.Hour), misdated: true},
				{name: "older", idAt: now.Add(-2 * time.Hour), start: now.Add(-2 * time.Hour), removed: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, cat := fileCatalog(t)
			ids := map[string]string{} // name -> id
			for _, b := range tc.backups {
				ids[b.name] = putBackup(t, st, b.idAt, b.start)
			}
			res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: tc.policy, Now: now, Grace: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			removed := map[string]bool{}
			for _, p := range res.Removed {
				removed[p.ID] = true
			}
			var newest string
			for _, d := range res.Kept {
				if slices.Contains(d.Reasons, schedule.ReasonNewest) {
					newest = d.ID
				}
			}
			for _, b := range tc.backups {
				id := ids[b.name]
				if removed[id] != b.removed || hasManifest(st, id) == b.removed {
					t.Errorf("%s: removed %v (manifest there %v), want removed %v", b.name, removed[id], hasManifest(st, id), b.removed)
				}
				i := slices.IndexFunc(res.Unreadable, func(e storage.Entry) bool { return e.ID == id })
				if (i >= 0) != b.misdated || i >= 0 && !errors.Is(res.Unreadable[i].Err, storage.ErrStartTime) {
					t.Errorf("%s: left alone %v, want %v; unreadable %+v", b.name, i >= 0, b.misdated, res.Unreadable)
				}
				if (newest == id) != b.new {
					t.Errorf("%s: kept as newest %v, want %v (newest %s)", b.name, newest == id, b.new, newest)
				}
			}
		})
	}
}

// Entries says what is wrong with a misdated backup; `latest` stops at it
// as at an unreadable manifest (it may be the newest, or hours older than
// the next); Newest, the daemon's last success, passes over it; by its id
// it is still read and restored.
func TestLatestStopsAtMisdatedBackup(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		idAt, start time.Time
		says        string
	}{
		{"ahead", now.Add(time.Hour), now.Add(time.Hour), "started at 2026-12-07T11:00:00Z, 1h0m0s after this host's clock: the clock of the host that took it runs ahead (or this one's is behind)"},
		{"no start time", now.Add(time.Minute), time.Time{}, "its manifest records no start time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			cat := storage.Catalog{Store: st, Now: func() time.Time { return now }}
			good := putBackup(t, st, now.Add(-time.Hour), now.Add(-time.Hour))
			bad := putBackup(t, st, tc.idAt, tc.start)

			ents, err := cat.Entries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 2 || ents[0].ID != bad {
				t.Fatalf("entries %+v, want %s first", ents, bad)
			}
			if err := ents[0].Damaged; !errors.Is(err, storage.ErrStartTime) || !strings.Contains(err.Error(), tc.says) || ents[1].Damaged != nil {
				t.Errorf("entries say %v, then %v; want %q, then nothing", err, ents[1].Damaged, tc.says)
			}
			if _, err := cat.Resolve(ctx, "latest"); !errors.Is(err, storage.ErrStartTime) || !strings.Contains(err.Error(), "latest: backup "+bad) {
				t.Errorf("latest: %v, want it to stop at %s", err, bad)
			}
			if m, _, err := cat.Newest(ctx); err != nil || m.ID != good {
				t.Errorf("newest: %s %v, want %s", m.ID, err, good)
			}
			if m, err := cat.Resolve(ctx, bad); err != nil || m.ID != bad {
				t.Errorf("by id: %s %v", m.ID, err)
			}
		})
	}
}

// newestFixture is a catalog whose clock reads now, holding one good
// backup taken an hour before.
func newestFixture(t *testing.T) (cat storage.Catalog, now time.Time, good string) {
	t.Helper()
	now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return storage.Catalog{Store: st, Now: func() time.Time { return now }}, now, putBackup(t, st, now.Add(-time.Hour), now.Add(-time.Hour))
}

// TestNewestPassesOverFailureFromAhead: a failed backup stamped ahead of
// the clock is not the failure after the last success the daemon reports
// (its /healthz said "failing" until the clock reached it).
func TestNewestPassesOverFailureFromAhead(t *testing.T) {
	ctx := context.Background()
	cat, now, good := newestFixture(t)
	for _, at := range []time.Time{now.Add(time.Hour), now.Add(-time.Minute)} {
		id := storage.NewID(at)
		if err := cat.WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusFailed, StartedAt: at, FinishedAt: at.Add(time.Second), Error: "pg_dump: exit status 1"}); err != nil {
			t.Fatal(err)
		}
	}
	m, failed, err := cat.Newest(ctx)
	if err != nil || m.ID != good {
		t.Fatalf("newest: %s %v, want %s", m.ID, err, good)
	}
	if failed == nil || !failed.StartedAt.Equal(now.Add(-time.Minute)) {
		t.Errorf("failure after it: %+v, want the one a minute ago, not the one an hour ahead", failed)
	}
}

// TestNewestPassesOverStoppedFailure: a backup the operator stopped (a
// signal to capture, the daemon's shutdown) is no failure after the last
// success: a daemon started after it said "failing" until the next one.
func TestNewestPassesOverStoppedFailure(t *testing.T) {
	ctx := context.Background()
	cat, now, good := newestFixture(t)
	at := now.Add(-time.Minute)
	stopped := storage.Manifest{ID: storage.NewID(at), Status: storage.StatusFailed, StartedAt: at, FinishedAt: at.Add(time.Second),
		Error: "cancelled: interrupted by SIGTERM", Stopped: true}
	if err := cat.WriteManifest(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	m, failed, err := cat.Newest(ctx)
	if err != nil || m.ID != good || failed != nil {
		t.Errorf("newest: %s, failure after it %+v, %v; want %s and no failure", m.ID, failed, err, good)
	}
}
