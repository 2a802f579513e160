package storage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// Commands run beside each other against one store: a `pgbackups delete`
// on another host while the daemon's retention or a `pgbackups prune` runs,
// a `list` or `restore latest` while either deletes. These tests play the
// other command at a chosen moment through a store that calls back.

// besideStore is a file store that runs beside once, the first time the
// operation it watches is called: List of the whole store (after the
// listing was taken), or Delete (before it deletes).
type besideStore struct {
	*file.Store
	onList, onDelete func()
	once             sync.Once
}

func (s *besideStore) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	objs, err := s.Store.List(ctx, prefix)
	if prefix == "" && s.onList != nil {
		s.once.Do(s.onList)
	}
	return objs, err
}

func (s *besideStore) Delete(ctx context.Context, key string) error {
	if s.onDelete != nil {
		s.once.Do(s.onDelete)
	}
	return s.Store.Delete(ctx, key)
}

// goodBackups stores n completed backups a minute apart, oldest first, and
// returns their ids newest first.
func goodBackups(t *testing.T, st *file.Store, now time.Time, n int) []string {
	t.Helper()
	ctx := context.Background()
	cat := storage.Catalog{Store: st}
	var ids []string
	for i := n - 1; i >= 0; i-- {
		at := now.Add(-time.Duration(i) * time.Minute)
		id := storage.NewID(at)
		m := storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Second),
			DataKey: storage.DataKey(id), StoredBytes: 4}
		if _, err := st.Put(ctx, m.DataKey, strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
		if err := cat.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append([]string{id}, ids...)
	}
	return ids
}

// TestPruneStopsWhenAKeptBackupIsDeletedMeanwhile: retention decided to
// keep the newest backup and remove the rest; a `pgbackups delete` of that
// newest one lands while it removes them. Going on would leave the store
// with no backup at all (seen with the binary on the file store: six
// backups of 20 MiB, KEEP_LAST=1, `delete NEWEST` 0.1 s after `prune`
// started; `list` then said "no backups stored yet").
func TestPruneStopsWhenAKeptBackupIsDeletedMeanwhile(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fs, _ := fileCatalog(t)
	ids := goodBackups(t, fs, now, 5)
	newest := ids[0]
	st := &besideStore{Store: fs}
	st.onDelete = func() {
		if err := (storage.Catalog{Store: fs}).Delete(ctx, newest); err != nil {
			t.Errorf("the delete beside prune: %v", err)
		}
	}
	opts := storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Now: now, Grace: 24 * time.Hour}
	res, err := storage.Prune(ctx, storage.Catalog{Store: st}, opts)
	if err == nil || !strings.Contains(err.Error(), newest) || !strings.Contains(err.Error(), "deleted while prune ran") {
		t.Errorf("prune: err = %v, want one saying kept backup %s was deleted while it ran", err, newest)
	}
	left, lerr := (storage.Catalog{Store: fs}).Manifests(ctx, false)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(left) == 0 {
		t.Fatalf("no backup left: prune removed %d backups that were there only because %s was kept", len(res.Removed), newest)
	}
	// What it did remove, it reports; the rest it left.
	if len(res.Removed)+len(left) != len(ids)-1 {
		t.Errorf("removed %d, %d left, of %d backups besides the deleted one", len(res.Removed), len(left), len(ids)-1)
	}

	// Run again, it keeps the newest of what is left.
	res, err = storage.Prune(ctx, storage.Catalog{Store: fs}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := (storage.Catalog{Store: fs}).Manifests(ctx, false); len(left) != 1 || len(res.Kept) != 1 || res.Kept[0].ID != left[0].ID {
		t.Errorf("second prune kept %+v, left %d backups", res.Kept, len(left))
	}
}

// TestManifestDeletedWhileListing: Entries listed the store, then a
// delete beside it removed a backup's manifest (delete goes manifest
// first) before Entries read it. That backup is being deleted, not
// unreadable: list must not show it as "unreadable" with a warning (seen
// with the binary on S3, `list` beside `delete` of the oldest of 40), latest
// must not stop at it, and retention must not leave it alone as a backup
// needing a person (its alert metric).
func TestManifestDeletedWhileListing(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		gone func(fs *file.Store, id string) error
	}{
		{"half-way", func(fs *file.Store, id string) error { return fs.Delete(ctx, storage.ManifestKey(id)) }},
		{"whole", func(fs *file.Store, id string) error { return storage.Catalog{Store: fs}.Delete(ctx, id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := fileCatalog(t)
			ids := goodBackups(t, fs, now, 3)
			deleting := ids[0]
			cat := func() storage.Catalog {
				st := &besideStore{Store: fs}
				st.onList = func() {
					if err := tc.gone(fs, deleting); err != nil {
						t.Errorf("the delete beside: %v", err)
					}
				}
				return storage.Catalog{Store: st}
			}
			entries, err := cat().Entries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Err != nil {
					t.Errorf("entry %s: Err = %v, want none: its manifest was deleted, not damaged", e.ID, e.Err)
				}
				if e.ID == deleting && e.Manifest != nil {
					t.Errorf("entry %s has a manifest", e.ID)
				}
			}

			ids = goodBackups(t, fs, now.Add(time.Hour), 2)
			deleting = ids[0]
			m, err := cat().Resolve(ctx, "latest")
			if err != nil || m.ID != ids[1] {
				t.Errorf("latest while %s is deleted = %s, %v; want %s", deleting, m.ID, err, ids[1])
			}

			ids = goodBackups(t, fs, now.Add(2*time.Hour), 2)
			deleting = ids[0]
			res, err := storage.Prune(ctx, cat(), storage.PruneOptions{Policy: schedule.Policy{KeepLast: 100}, Now: now.Add(2 * time.Hour), Grace: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range res.Unreadable {
				t.Errorf("prune left alone %s (%v): it was being deleted", e.ID, e.Err)
			}
			if len(res.Kept) == 0 || res.Kept[0].ID != ids[1] {
				t.Errorf("prune kept %+v, want %s newest", res.Kept, ids[1])
			}
		})
	}
}

// TestDamageOfABackupDeletedMeanwhile: restore, info and url read the
// manifest, then list the backup's folder to check its objects before
// anything changes. A delete landing in between removes the manifest and
// then the rest: that backup is gone, and the error must say so, not call
// it damaged (restore said "backup is corrupt: damaged: its data object
// ... is missing"), which sends the operator looking for storage faults.
func TestDamageOfABackupDeletedMeanwhile(t *testing.T) {
	ctx := context.Background()
	fs, cat := fileCatalog(t)
	ids := goodBackups(t, fs, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), 2)
	gone, damaged := ids[0], ids[1]
	mGone, err := cat.Manifest(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	mDamaged, err := cat.Manifest(ctx, damaged)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := fs.Delete(ctx, mDamaged.DataKey); err != nil {
		t.Fatal(err)
	}

	err = cat.Damage(ctx, mGone)
	if !errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), "backup "+gone+" was deleted") {
		t.Errorf("Damage of a backup deleted after its manifest was read = %v; want it named deleted (ErrNotFound), not damaged", err)
	}
	// Its manifest still there, a missing data object is damage.
	if err := cat.Damage(ctx, mDamaged); !errors.Is(err, storage.ErrDamaged) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Damage of a backup whose data object alone is missing = %v; want ErrDamaged", err)
	}
}

// notFoundStore answers "not found" for reads of one key it still lists.
type notFoundStore struct {
	*file.Store
	key string
}

func (s notFoundStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if key == s.key {
		return nil, storage.ErrNotFound
	}
	return s.Store.Get(ctx, key)
}

// TestManifestListedButNotFound: a manifest is taken for deleted only
// when a fresh listing agrees. A server answering "not found" for a
// manifest it still lists leaves the backup unreadable, for a person to
// look at, never an orphan whose data prune removes.
func TestManifestListedButNotFound(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fs, _ := fileCatalog(t)
	ids := goodBackups(t, fs, now.Add(-72*time.Hour), 2)
	old := ids[1]
	for _, o := range []string{storage.ManifestKey(old), storage.DataKey(old)} {
		at := now.Add(-72 * time.Hour)
		if err := os.Chtimes(fs.Location(o), at, at); err != nil {
			t.Fatal(err)
		}
	}
	cat := storage.Catalog{Store: notFoundStore{fs, storage.ManifestKey(old)}}
	res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 5}, Now: now, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || len(res.Unreadable) != 1 || res.Unreadable[0].ID != old {
		t.Errorf("prune removed %+v, left alone %+v; want %s left alone, nothing removed", res.Removed, res.Unreadable, old)
	}
	if _, err := fs.Get(ctx, storage.DataKey(old)); err != nil {
		t.Errorf("data object of %s: %v", old, err)
	}
}

// listCounter counts listings of the whole store.
type listCounter struct {
	*file.Store
	mu sync.Mutex
	n  int
}

func (s *listCounter) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	if prefix == "" {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
	return s.Store.List(ctx, prefix)
}

// TestPruneRecheck: the check that kept backups are still there lists the
// whole store before each deletion, unless Recheck lets one check stand
// for a while (a prune under the backup lock).
func TestPruneRecheck(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		recheck time.Duration
		want    int // listings of the whole store: Entries' own, then the checks
	}{{0, 1 + 4}, {time.Hour, 1 + 1}} {
		fs, _ := fileCatalog(t)
		goodBackups(t, fs, now, 5)
		st := &listCounter{Store: fs}
		res, err := storage.Prune(ctx, storage.Catalog{Store: st}, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: time.Hour, Recheck: tc.recheck})
		if err != nil || len(res.Removed) != 4 {
			t.Fatalf("Recheck %s: removed %d, %v; want 4", tc.recheck, len(res.Removed), err)
		}
		if st.n != tc.want {
			t.Errorf("Recheck %s: %d listings of the whole store, want %d", tc.recheck, st.n, tc.want)
		}
	}
}
