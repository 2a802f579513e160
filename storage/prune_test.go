package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// mtimeStore is a file store whose objects list as last written at their
// mtime, which a test can set: the store itself takes the later ctime,
// which it cannot. An orphan's age is what prune judges; on S3 the server
// sets it as the store here does.
type mtimeStore struct{ *file.Store }

func (s mtimeStore) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	return s.mtimes(s.Store.List(ctx, prefix))
}

func (s mtimeStore) Temporaries(ctx context.Context) ([]storage.Object, error) {
	return s.mtimes(s.Store.Temporaries(ctx))
}

func (s mtimeStore) mtimes(objs []storage.Object, err error) ([]storage.Object, error) {
	for i, o := range objs {
		if info, serr := os.Stat(s.Location(o.Key)); serr == nil {
			objs[i].Modified = info.ModTime()
		}
	}
	return objs, err
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	st, _ := fileCatalog(t)
	cat := storage.Catalog{Store: mtimeStore{st}}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	old := now.Add(-48 * time.Hour)

	backup := func(daysAgo int, ok bool) string {
		t.Helper()
		at := now.Add(-time.Duration(daysAgo) * 24 * time.Hour)
		id := storage.NewID(at)
		m := storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Minute)}
		if ok {
			m.DataKey = storage.DataKey(id)
			if _, err := st.Put(ctx, m.DataKey, strings.NewReader("data")); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Put(ctx, storage.GlobalsKey(id), strings.NewReader("globals")); err != nil {
				t.Fatal(err)
			}
		} else {
			m.Status, m.Error = storage.StatusFailed, "pg_dump: exit status 1"
		}
		if err := cat.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		return id
	}
	good := []string{backup(1, true), backup(2, true), backup(3, true), backup(4, true), backup(5, true)}
	failedOld := backup(3, false)
	failedNew := backup(0, false)

	// Objects without a manifest: one from a capture that died two days
	// ago, one that may still be running.
	orphan := func(at time.Time) string {
		id := storage.NewID(at)
		if _, err := st.Put(ctx, storage.DataKey(id), strings.NewReader("partial")); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(st.Location(storage.DataKey(id)), at, at)
		return id
	}
	orphanOld, orphanNew := orphan(old), orphan(now.Add(-time.Minute))

	// A manifest that does not parse: left for a person.
	unreadable := storage.NewID(now.Add(-10 * 24 * time.Hour))
	st.Put(ctx, storage.ManifestKey(unreadable), strings.NewReader("{not json"))

	// Temporary files of interrupted writes.
	tmpOld := filepath.Join(st.Root, good[0], ".tmp-"+good[0]+".dump.zst-1")
	tmpNew := filepath.Join(st.Root, good[1], ".tmp-"+good[1]+".dump.zst-2")
	for _, p := range []string{tmpOld, tmpNew} {
		os.WriteFile(p, []byte("half"), 0o600)
	}
	os.Chtimes(tmpOld, old, old)
	os.Chtimes(tmpNew, now, now)

	opts := storage.PruneOptions{Policy: schedule.Policy{KeepLast: 2}, Now: now, Grace: 24 * time.Hour}
	before := keys(t, st)

	opts.DryRun = true
	dry, err := storage.Prune(ctx, cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	if after := keys(t, st); !slices.Equal(before, after) {
		t.Fatalf("dry run changed storage:\nbefore %v\nafter  %v", before, after)
	}
	want := map[string]string{
		good[2]: storage.PruneRetention, good[3]: storage.PruneRetention, good[4]: storage.PruneRetention,
		failedOld: storage.PruneFailed, orphanOld: storage.PruneOrphan, good[0] + "/.tmp-" + good[0] + ".dump.zst-1": storage.PruneTemporary,
	}
	if got := removedMap(dry); !mapsEqual(got, want) {
		t.Fatalf("dry run would remove %v\nwant %v", got, want)
	}
	if len(dry.Unreadable) != 1 || dry.Unreadable[0].ID != unreadable {
		t.Fatalf("unreadable %+v", dry.Unreadable)
	}
	if !slices.ContainsFunc(dry.Notes, func(n string) bool { return strings.HasPrefix(n, "left 1 unfinished write (") }) {
		t.Errorf("notes %q, want one saying the young temporary file is left", dry.Notes)
	}
	var kept []string
	for _, d := range dry.Kept {
		kept = append(kept, d.ID)
	}
	sort.Strings(kept)
	wantKept := []string{good[0], good[1], failedNew}
	sort.Strings(wantKept)
	if !slices.Equal(kept, wantKept) {
		t.Fatalf("kept %v, want %v", kept, wantKept)
	}

	opts.DryRun = false
	res, err := storage.Prune(ctx, cat, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := removedMap(res); !mapsEqual(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	var left []string
	for _, k := range keys(t, st) {
		left = append(left, strings.Split(k, "/")[0])
	}
	left = slices.Compact(left)
	wantLeft := []string{good[0], good[1], failedNew, orphanNew, unreadable}
	sort.Strings(wantLeft)
	if !slices.Equal(left, wantLeft) {
		t.Fatalf("left %v, want %v", left, wantLeft)
	}
	if _, err := os.Stat(tmpOld); !os.IsNotExist(err) {
		t.Fatalf("old temporary file: %v", err)
	}
	if _, err := os.Stat(tmpNew); err != nil {
		t.Fatalf("young temporary file: %v", err)
	}
	// A second run finds nothing more to do.
	again, err := storage.Prune(ctx, cat, opts)
	if err != nil || len(again.Removed) != 0 {
		t.Fatalf("second prune: %+v, %v", again.Removed, err)
	}
}

func TestRemoveTemporaryRefusesBackups(t *testing.T) {
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := storage.NewID(time.Now())
	st.Put(context.Background(), storage.DataKey(id), strings.NewReader("x"))
	for _, key := range []string{storage.DataKey(id), "../.tmp-x", "", id + "/../../.tmp-x"} {
		if err := st.RemoveTemporary(context.Background(), key); err == nil {
			t.Errorf("RemoveTemporary(%q) succeeded", key)
		}
	}
	if _, err := os.Stat(st.Location(storage.DataKey(id))); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, st *file.Store) []string {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Key)
	}
	return ks
}

func removedMap(r storage.PruneResult) map[string]string {
	m := map[string]string{}
	for _, p := range r.Removed {
		m[p.ID+p.Key] = p.Reason
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// flakyStore is a file store that cannot list unfinished writes (an S3
// policy without s3:ListBucketMultipartUploads) and may not delete one
// backup's objects.
type flakyStore struct {
	*file.Store
	undeletable string // a backup id
}

func (s flakyStore) Temporaries(context.Context) ([]storage.Object, error) {
	return nil, errors.New("ListMultipartUploads: AccessDenied")
}

func (s flakyStore) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, s.undeletable+"/") {
		return errors.New("DeleteObject: AccessDenied")
	}
	return s.Store.Delete(ctx, key)
}

// TestPruneReportsWhatItRemoved: unfinished writes that cannot be listed do
// not stop retention, and a deletion that fails is an error, not "removed".
func TestPruneReportsWhatItRemoved(t *testing.T) {
	ctx := context.Background()
	fs, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var ids []string
	for day := range 4 {
		at := now.Add(-time.Duration(day) * 24 * time.Hour)
		id := storage.NewID(at)
		if _, err := fs.Put(ctx, storage.DataKey(id), strings.NewReader("data")); err != nil {
			t.Fatal(err)
		}
		if err := (storage.Catalog{Store: fs}).WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Minute), DataKey: storage.DataKey(id)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	cat := storage.Catalog{Store: flakyStore{Store: fs, undeletable: ids[2]}}
	res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "list unfinished writes") || !strings.Contains(err.Error(), "prune "+ids[2]) {
		t.Errorf("Prune error = %v, want the listing and %s's deletion named", err, ids[2])
	}
	var removed []string
	for _, p := range res.Removed {
		removed = append(removed, p.ID)
	}
	if want := []string{ids[1], ids[3]}; !slices.Equal(removed, want) {
		t.Errorf("Removed = %v, want %v (not %s, whose deletion failed)", removed, want, ids[2])
	}
	left, err := cat.Manifests(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0].ID != ids[0] || left[1].ID != ids[2] {
		t.Errorf("left %v, want %s and %s", left, ids[0], ids[2])
	}
}

// TestPruneLeavesNestedKeys: a key nested in an id's folder (an S3
// console's folder, a copy someone put there) is not the backup's. Delete
// leaves it, so prune must not count it as an orphan it removed, on every
// run, for ever.
func TestPruneLeavesNestedKeys(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	id := storage.NewID(time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC))
	nested := id + "/extra/notes.txt"
	if _, err := st.Put(ctx, nested, strings.NewReader("mine")); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		res, err := storage.Prune(ctx, cat, storage.PruneOptions{Now: time.Now().Add(2 * time.Hour), Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Removed) != 0 {
			t.Errorf("run %d removed %+v; want nothing (the nested key is not a backup's)", run, res.Removed)
		}
	}
	if _, err := st.Get(ctx, nested); err != nil {
		t.Errorf("the nested key: %v", err)
	}
}

// noUploadsStore is a file store whose server has no ListMultipartUploads
// at all (s3proxy, some gateways): errors.ErrUnsupported.
type noUploadsStore struct{ *file.Store }

func (noUploadsStore) Temporaries(context.Context) ([]storage.Object, error) {
	return nil, fmt.Errorf("s3: list unfinished uploads: %w: NotImplemented", errors.ErrUnsupported)
}

// TestPruneNotesUnsupportedTemporaries: a store that can never list
// unfinished writes is a note, not an error on every pass; a store that
// refused this time (TestPruneReportsWhatItRemoved) stays an error.
func TestPruneNotesUnsupportedTemporaries(t *testing.T) {
	ctx := context.Background()
	fs, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	id := storage.NewID(now)
	if err := (storage.Catalog{Store: fs}).WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: now, FinishedAt: now}); err != nil {
		t.Fatal(err)
	}
	res, err := storage.Prune(ctx, storage.Catalog{Store: noUploadsStore{fs}}, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: time.Hour})
	if err != nil {
		t.Errorf("Prune: %v, want no error", err)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "NotImplemented") {
		t.Errorf("Notes = %q, want one naming the unsupported listing", res.Notes)
	}
}

// TestPruneDatalessManifest: a completed manifest that names no data
// object, and records no digest or size that would show one is missing,
// has nothing to restore. It is not the newest good backup that retention
// keeps in place of the one that restores.
func TestPruneDatalessManifest(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	good := storage.NewID(now.Add(-2 * time.Hour))
	if _, err := st.Put(ctx, storage.DataKey(good), strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	if err := cat.WriteManifest(ctx, storage.Manifest{ID: good, Status: storage.StatusCompleted, StartedAt: now.Add(-2 * time.Hour),
		FinishedAt: now.Add(-2*time.Hour + time.Minute), DataKey: storage.DataKey(good)}); err != nil {
		t.Fatal(err)
	}
	dataless := storage.NewID(now.Add(-time.Hour))
	if err := cat.WriteManifest(ctx, storage.Manifest{ID: dataless, Status: storage.StatusCompleted, StartedAt: now.Add(-time.Hour),
		FinishedAt: now.Add(-time.Hour + time.Minute)}); err != nil {
		t.Fatal(err)
	}
	res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Location: time.UTC, Now: now, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 1 || res.Kept[0].ID != good || len(res.Removed) != 0 {
		t.Errorf("kept %v, removed %v; want %s kept and nothing removed", res.Kept, res.Removed, good)
	}
	if len(res.Unreadable) != 1 || res.Unreadable[0].ID != dataless || res.Unreadable[0].Damaged == nil ||
		!strings.Contains(res.Unreadable[0].Damaged.Error(), "names no data object") {
		t.Errorf("left alone %+v, want %s, damaged: names no data object", res.Unreadable, dataless)
	}
}

// TestGlobalsMissingOnlyWhenDataReads: a backup missing only its globals
// object restores without them, unless its manifest cannot check its data
// either; then it is not called restorable.
func TestGlobalsMissingOnlyWhenDataReads(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		sha        string
		restorable bool
	}{
		{"digests", strings.Repeat("a", 64), true},
		{"no digest", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := storage.NewID(now)
			now = now.Add(time.Hour)
			if _, err := st.Put(ctx, storage.DataKey(id), strings.NewReader("data")); err != nil {
				t.Fatal(err)
			}
			m := storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: now, FinishedAt: now.Add(time.Minute),
				DataKey: storage.DataKey(id), GlobalsKey: storage.GlobalsKey(id), SHA256: tc.sha, DumpSHA256: tc.sha}
			if err := cat.WriteManifest(ctx, m); err != nil {
				t.Fatal(err)
			}
			err := cat.Damage(ctx, m)
			if !errors.Is(err, storage.ErrDamaged) || errors.Is(err, storage.ErrGlobalsMissing) != tc.restorable {
				t.Errorf("Damage = %v; want damaged, globals-only %v", err, tc.restorable)
			}
		})
	}
}
