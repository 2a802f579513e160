package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	st, err := New(filepath.Join(t.TempDir(), "backups"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

type failAfter struct {
	r    io.Reader
	left int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errors.New("source broke")
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func TestPutIsAtomic(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if _, err := st.Put(ctx, "a/a.dump.zst", strings.NewReader("complete")); err != nil {
		t.Fatal(err)
	}
	// A failed overwrite leaves the old object whole and no temporary behind.
	_, err := st.Put(ctx, "a/a.dump.zst", &failAfter{r: strings.NewReader(strings.Repeat("x", 1<<20)), left: 1000})
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("err = %v", err)
	}
	rc, err := st.Get(ctx, "a/a.dump.zst")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "complete" {
		t.Fatalf("object = %q after a failed overwrite", b)
	}
	if tmps, _ := st.Temporaries(context.Background()); len(tmps) != 0 {
		t.Fatalf("temporaries left: %+v", tmps)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Put(cctx, "b/b.dump.zst", strings.NewReader("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v", err)
	}
	if _, err := st.Get(ctx, "b/b.dump.zst"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("cancelled Put left an object: %v", err)
	}
}

func TestListHidesTemporariesAndDeleteTidies(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	st.Put(ctx, "x/one", strings.NewReader("1"))
	st.Put(ctx, "y/two", strings.NewReader("22"))
	// A crash mid-Put leaves a hidden temporary.
	os.WriteFile(filepath.Join(st.Root, "x", tmpPrefix+"three-123"), []byte("partial"), 0o600)
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].Key != "x/one" || objs[1].Key != "y/two" || objs[1].Size != 2 {
		t.Fatalf("List = %+v", objs)
	}
	if objs, _ := st.List(ctx, "y/"); len(objs) != 1 {
		t.Fatalf("prefix list = %+v", objs)
	}
	if err := st.Delete(ctx, "y/two"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Root, "y")); !os.IsNotExist(err) {
		t.Errorf("empty directory left after delete: %v", err)
	}
	if err := st.Delete(ctx, "y/two"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestKeysCannotEscapeRoot(t *testing.T) {
	st := newStore(t)
	for _, key := range []string{"", "../etc/passwd", "a/../../b", "/abs", "a\\b", "x/" + tmpPrefix + "y"} {
		if _, err := st.Put(context.Background(), key, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted", key)
		}
	}
}

// A Put spanning many writeback chunks stores every byte in order.
func TestPutLargeAcrossWritebackChunks(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	want := make([]byte, 5*writebackChunk+12345)
	for i := range want {
		want[i] = byte(i*7 + i/4099)
	}
	n, err := st.Put(ctx, "big/big.dump.zst", bytes.NewReader(want))
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Put = %d, %v", n, err)
	}
	rc, err := st.Get(ctx, "big/big.dump.zst")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, want) {
		t.Fatalf("stored %d bytes differ from the %d written", len(got), len(want))
	}
}

// TestRootThroughSymlink: the store's root, or a folder above it, may be a
// symlink. Under systemd with DynamicUser= the StateDirectory is one
// (/var/lib/pgbackups -> private/pgbackups, man systemd.exec); so is many a
// hand-made /backups -> /mnt/nas/backups. List and Temporaries must still
// find what is there (filepath.WalkDir does not descend into a root that
// is a symlink), and the store is named as it was given.
func TestRootThroughSymlink(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	target := filepath.Join(base, "lib", "private", "pgbackups")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("private", "pgbackups"), filepath.Join(base, "lib", "pgbackups")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("lib", filepath.Join(base, "alias")); err != nil {
		t.Fatal(err)
	}
	id := storage.NewID(time.Now())
	key := storage.ManifestKey(id)
	tmpKey := id + "/" + tmpPrefix + id + ".dump.zst-123"
	for _, dir := range []string{
		filepath.Join("lib", "pgbackups"),              // the root is a symlink
		filepath.Join("alias", "private", "pgbackups"), // a folder above it is
		filepath.Join("alias", "pgbackups"),            // both
	} {
		for _, open := range []struct {
			name string
			f    func(string) (*Store, error)
		}{{"New", New}, {"Open", Open}} {
			t.Run(open.name+"/"+dir, func(t *testing.T) {
				dir := filepath.Join(base, dir)
				st, err := open.f(dir)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Put(ctx, key, strings.NewReader("{}")); err != nil {
					t.Fatal(err)
				}
				// A capture killed mid-Put leaves a temporary.
				if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(tmpKey)), []byte("partial"), 0o600); err != nil {
					t.Fatal(err)
				}
				if objs, err := st.List(ctx, ""); err != nil || len(objs) != 1 || objs[0].Key != key {
					t.Errorf("List = %+v, %v; want %s", objs, err, key)
				}
				if tmps, err := st.Temporaries(ctx); err != nil || len(tmps) != 1 || tmps[0].Key != tmpKey {
					t.Errorf("Temporaries = %+v, %v; want %s", tmps, err, tmpKey)
				}
				if got, want := st.Location(key), filepath.Join(dir, id, id+".manifest.json"); got != want {
					t.Errorf("Location = %s, want %s, the path as given", got, want)
				}
				if err := st.Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
				if err := st.RemoveTemporary(ctx, tmpKey); err != nil {
					t.Fatal(err)
				}
				// The backup's folder goes with its last file; the root stays.
				if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
					t.Errorf("store after removing everything = %v, %v; want an empty root", ents, err)
				}
			})
		}
	}
}

// TestPutFailsOnWritebackError: waiting on a chunk's writeback reports an
// I/O error once and consumes it (Linux 4.13 and later), so the fsync before
// the rename would return 0 over blocks that were never written. Put must
// fail with that error, commit nothing and leave no temporary behind.
func TestPutFailsOnWritebackError(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	waits := 0
	st.finishWriteback = func(f *os.File, off, n int64) error {
		waits++
		if waits == 2 { // the second chunk: the first is written out
			return syscall.EIO
		}
		return finishWriteback(f, off, n)
	}
	key := storage.DataKey("20261125-020000-k3f9")
	_, err := st.Put(ctx, key, bytes.NewReader(make([]byte, 6*writebackChunk)))
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Put = %v; want EIO naming %s", err, key)
	}
	if _, err := st.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after the failed Put: %v; want ErrNotFound", err)
	}
	if tmps, err := st.Temporaries(ctx); err != nil || len(tmps) != 0 {
		t.Errorf("Temporaries = %+v, %v; want none", tmps, err)
	}

	// The writer stays failed: nothing more is written after the error.
	f, err := os.CreateTemp(t.TempDir(), "wb")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writebackWriter{f: f, finish: func(*os.File, int64, int64) error { return syscall.EIO }}
	chunk := make([]byte, writebackChunk)
	if _, err := w.Write(chunk); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	if _, err := w.Write(chunk); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second chunk, waiting on the first: %v; want EIO", err)
	}
	if n, err := w.Write([]byte("more")); n != 0 || !errors.Is(err, syscall.EIO) {
		t.Errorf("Write after the error = %d, %v; want 0, EIO", n, err)
	}
}

// TestNewThroughDanglingSymlink: a store path that is a symlink to a folder
// that does not exist says so (MkdirAll's own error is "file exists").
func TestNewThroughDanglingSymlink(t *testing.T) {
	base := t.TempDir()
	link := filepath.Join(base, "backups")
	if err := os.Symlink(filepath.Join(base, "mnt", "nas"), link); err != nil {
		t.Fatal(err)
	}
	_, err := New(link)
	if err == nil || !strings.Contains(err.Error(), "is a symlink to "+filepath.Join(base, "mnt", "nas")+", which does not exist") {
		t.Fatalf("New through a dangling symlink: %v", err)
	}
}
