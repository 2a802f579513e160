package storage_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// completedManifest is a good backup's manifest for id, whose data object
// holds n bytes.
func completedManifest(id string, at time.Time, n int64) storage.Manifest {
	return storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Minute),
		DataKey: storage.DataKey(id), GlobalsKey: storage.GlobalsKey(id), StoredBytes: n,
		SHA256: strings.Repeat("a", 64), DumpSHA256: strings.Repeat("b", 64)}
}

// TestPruneLeavesABackupBeingCopiedIn: a backup copied back into the
// store with its times kept (rsync -a writes the data and globals first,
// the manifest last, each with the source's days-old mtime) is no dead
// capture's leftovers while the copy runs. Prune took it for one and
// removed its data; it goes only once the grace has passed since it
// arrived with no manifest.
func TestPruneLeavesABackupBeingCopiedIn(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		after time.Duration // from the copy to the prune
		kept  bool
	}{
		{name: "prune while the copy runs", kept: true},
		{name: "prune a grace after a copy that never finished", after: 25 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, cat := fileCatalog(t)
			old := time.Now().Add(-10 * 24 * time.Hour)
			id := storage.NewID(old)
			for _, key := range []string{storage.DataKey(id), storage.GlobalsKey(id)} {
				if _, err := st.Put(ctx, key, strings.NewReader("copied")); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(st.Location(key), old, old); err != nil {
					t.Fatal(err)
				}
			}
			res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.DefaultPolicy(), Now: time.Now().Add(tc.after), Grace: 24 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			left := keys(t, st)
			if tc.kept && len(left) != 2 || !tc.kept && len(left) != 0 {
				t.Fatalf("left %v; removed %+v", left, res.Removed)
			}
		})
	}
}

// agedStore is a store whose objects all list as written at old, as an
// orphan's on S3 (where no copy can set LastModified), except those in
// fresh. Before its first listing of one folder, and before its first
// Delete, it runs the hooks: a copy or a capture writing meanwhile.
type agedStore struct {
	*file.Store
	old                   time.Time
	fresh                 map[string]bool
	beforeList, beforeDel func()
	listOnce, delOnce     sync.Once
}

func (s *agedStore) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	if prefix != "" && s.beforeList != nil {
		s.listOnce.Do(s.beforeList)
	}
	objs, err := s.Store.List(ctx, prefix)
	for i := range objs {
		if !s.fresh[objs[i].Key] {
			objs[i].Modified = s.old
		}
	}
	return objs, err
}

func (s *agedStore) Delete(ctx context.Context, key string) error {
	if s.beforeDel != nil {
		s.delOnce.Do(s.beforeDel)
	}
	return s.Store.Delete(ctx, key)
}

// TestPruneLooksAgainBeforeRemovingAnOrphan: what arrives in an orphan's
// folder after prune listed the store decides. A manifest or a new object
// written before prune removes it leaves it alone; a manifest written
// while it goes is left, and prune says the backup lost its objects. Prune
// removed the folder through Catalog.Delete, which lists it again and
// deletes a manifest first, the one that had just arrived included.
func TestPruneLooksAgainBeforeRemovingAnOrphan(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-10 * 24 * time.Hour)
	for _, tc := range []struct {
		name       string
		manifestAt string // "list": before prune lists the folder again; "delete": before its first Delete
		globals    bool   // a new object arrives before prune lists the folder again
		wantKeys   int    // objects left
		wantNote   string
		wantErr    string
	}{
		{name: "nothing arrives"},
		{name: "a manifest arrives", manifestAt: "list", wantKeys: 2, wantNote: "a manifest was written to it"},
		{name: "an object arrives", globals: true, wantKeys: 2, wantNote: "written to at"},
		{name: "a manifest arrives while the orphan goes", manifestAt: "delete", wantKeys: 1, wantErr: "a manifest was written to it while its objects were removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			id := storage.NewID(old)
			n, err := fs.Put(ctx, storage.DataKey(id), strings.NewReader("a complete old dump"))
			if err != nil {
				t.Fatal(err)
			}
			st := &agedStore{Store: fs, old: old, fresh: map[string]bool{}}
			writeManifest := func() {
				if err := (storage.Catalog{Store: fs}).WriteManifest(ctx, completedManifest(id, old, n)); err != nil {
					t.Error(err)
				}
			}
			switch tc.manifestAt {
			case "list":
				st.beforeList = writeManifest
			case "delete":
				st.beforeDel = writeManifest
			}
			if tc.globals {
				st.beforeList = func() {
					st.fresh[storage.GlobalsKey(id)] = true
					if _, err := fs.Put(ctx, storage.GlobalsKey(id), strings.NewReader("globals")); err != nil {
						t.Error(err)
					}
				}
			}
			res, err := storage.Prune(ctx, storage.Catalog{Store: st}, storage.PruneOptions{Policy: schedule.DefaultPolicy(), Now: now, Grace: 24 * time.Hour})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("prune: %v; want error %q", err, tc.wantErr)
			}
			left := keys(t, fs)
			if len(left) != tc.wantKeys {
				t.Fatalf("left %v, want %d objects; removed %+v", left, tc.wantKeys, res.Removed)
			}
			if tc.manifestAt != "" && !slices.Contains(left, storage.ManifestKey(id)) {
				t.Fatalf("the manifest that arrived was removed; left %v", left)
			}
			notes := strings.Join(res.Notes, "\n")
			if tc.wantNote != "" && !strings.Contains(notes, tc.wantNote) {
				t.Errorf("notes %q, want %q", notes, tc.wantNote)
			}
			if tc.wantKeys == 0 && (len(res.Removed) != 1 || res.Removed[0].Objects != 1 || res.Removed[0].Bytes != n) {
				t.Errorf("removed %+v, want the orphan's one object of %d bytes", res.Removed, n)
			}
			if tc.wantNote != "" && len(res.Removed) != 0 {
				t.Errorf("removed %+v, want nothing", res.Removed)
			}
		})
	}
}
