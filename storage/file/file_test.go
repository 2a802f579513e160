package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
