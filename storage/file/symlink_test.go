package file

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestDeleteLeavesSymlinkTargetsWhole: a backup's object that is a symlink
// (a big dump moved to another disk and linked back) is unlinked by delete,
// prune and the removal of temporaries, and what it points to, outside the
// store, is left whole. The gentle delete used to open the link's target
// for writing and shrink it 8 MiB at a time.
func TestDeleteLeavesSymlinkTargetsWhole(t *testing.T) {
	ctx := context.Background()
	st, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := storage.NewID(time.Now().Add(-48 * time.Hour))
	content := bytes.Repeat([]byte("outside the store "), (3*shrinkStep)/18+1000)
	for _, key := range []string{storage.DataKey(id), id + "/" + tmpPrefix + id + ".dump.zst-12345"} {
		outside := filepath.Join(t.TempDir(), "moved.dump.zst")
		if err := os.WriteFile(outside, content, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(st.Root, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil { // a delete removes it once empty
			t.Fatal(err)
		}
		if err := os.Symlink(outside, link); err != nil {
			t.Fatal(err)
		}
		if filepath.Base(key)[0] == '.' {
			err = st.RemoveTemporary(ctx, key)
		} else {
			err = st.Delete(ctx, key)
		}
		if err != nil {
			t.Fatalf("remove %s: %v", key, err)
		}
		if _, err := os.Lstat(link); !os.IsNotExist(err) {
			t.Errorf("%s: the link is still there: %v", key, err)
		}
		if got, err := os.ReadFile(outside); err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s: the file it pointed to, outside the store, is now %d bytes (was %d): %v", key, len(got), len(content), err)
		}
	}
}

// TestListSymlinkedObjectSize: an object moved elsewhere and linked back is
// listed at the size Get reads (its target's), so the backup is not taken
// for damaged (its manifest's stored_bytes against the link's own few
// bytes); a dangling link is listed at the link's size, so it is.
func TestListSymlinkedObjectSize(t *testing.T) {
	ctx := context.Background()
	st, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := storage.NewID(time.Now())
	content := bytes.Repeat([]byte("moved "), 10000)
	outside := filepath.Join(t.TempDir(), "moved.dump.zst")
	if err := os.WriteFile(outside, content, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(st.Root, filepath.FromSlash(storage.DataKey(id)))
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, id+"/")
	if err != nil || len(objs) != 1 || objs[0].Size != int64(len(content)) {
		t.Fatalf("List of a symlinked object: %+v, %v; want one object of %d bytes", objs, err, len(content))
	}
	os.Remove(outside)
	objs, err = st.List(ctx, id+"/")
	if err != nil || len(objs) != 1 || objs[0].Size == int64(len(content)) {
		t.Fatalf("List of a dangling symlink: %+v, %v; want it listed, not at the gone target's size", objs, err)
	}
}

// TestListSkipsSymlinkedFolders: a symlink to a directory inside a
// backup's folder is no object (WalkDir does not enter it); it used to be
// listed at the directory's size.
func TestListSkipsSymlinkedFolders(t *testing.T) {
	st, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := storage.NewID(time.Now())
	if _, err := st.Put(context.Background(), storage.ManifestKey(id), bytes.NewReader([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(st.Root, id, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(context.Background(), id+"/")
	if err != nil || len(objs) != 1 || objs[0].Key != storage.ManifestKey(id) {
		t.Fatalf("List: %+v, %v; want the manifest only", objs, err)
	}
}
