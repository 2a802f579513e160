package file

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// bigFile puts a sparse file of size bytes under key, as a stored backup.
func bigFile(t *testing.T, st *Store, key string, size int64) string {
	t.Helper()
	p := filepath.Join(st.Root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// A big file is freed a step at a time, and its key never shows a
// truncated file meanwhile: it is the whole file or not found, and the
// steps are seen under a temporary name.
func TestDeleteBigFileGently(t *testing.T) {
	st := newStore(t)
	const size = 6*shrinkStep + 12345
	p := bigFile(t, st, "b/20260101-000000-abcd.dump.zst", size)

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- st.Delete(context.Background(), "b/20260101-000000-abcd.dump.zst") }()
	// Looks that found the key gone and its blocks part-freed under a
	// temporary name: only a delete still under way shows that (the key
	// is gone once Delete has returned, too, so that alone proves nothing).
	stepped := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		if info, err := os.Stat(p); err == nil {
			if info.Size() != size {
				t.Fatalf("the key shows a %d-byte file mid-delete, want all %d bytes or nothing", info.Size(), size)
			}
			continue
		}
		tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(p), tmpPrefix+"*"))
		for _, tmp := range tmps {
			if info, err := os.Stat(tmp); err == nil && info.Size() > 0 && info.Size() < size {
				stepped++
			}
		}
	}
	if took := time.Since(start); took < 5*shrinkPause {
		t.Errorf("deleted %d steps' worth in %s: freed at once, not a step at a time", size/shrinkStep, took)
	}
	if stepped == 0 {
		t.Error("never saw the key gone and its file part-freed under a temporary name: freed at once, not a step at a time")
	}
	if tmps, err := st.Temporaries(context.Background()); err != nil || len(tmps) != 0 {
		t.Errorf("left behind: %+v, %v", tmps, err)
	}
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Errorf("empty directory left after delete: %v", err)
	}
}

// A delete whose context ends stops pacing and removes the rest at once.
// The (sparse) file would take a minute to free at shrinkPause a step, so
// the bound below is on a hang, not on how fast the machine is.
func TestDeleteCancelledFinishesAtOnce(t *testing.T) {
	st := newStore(t)
	const steps = 3000
	p := bigFile(t, st, "b/x.dump.zst", steps*shrinkStep)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- st.Delete(ctx, "b/x.dump.zst") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(steps * shrinkPause / 6):
		t.Fatalf("cancelled delete still running after %s: it is freeing %d steps %s apart, not at once", steps*shrinkPause/6, steps, shrinkPause)
	}
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
	if err := st.Delete(ctx, "b/x.dump.zst"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// A delete cut short (the process killed while shrinking) leaves a hidden
// temporary that prune lists and removes, never a visible object.
func TestInterruptedDeleteIsATemporary(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	const id = "20261125-020000-k3f9"
	bigFile(t, st, id+"/"+tmpPrefix+id+".dump.zst-deleting", 3*shrinkStep)
	if objs, _ := st.List(ctx, ""); len(objs) != 0 {
		t.Fatalf("List shows %+v", objs)
	}
	tmps, err := st.Temporaries(ctx)
	if err != nil || len(tmps) != 1 {
		t.Fatalf("Temporaries = %+v, %v", tmps, err)
	}
	if err := st.RemoveTemporary(ctx, tmps[0].Key); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Root, id)); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
}

// TestTemporariesAreOnlyOurs: a .tmp- file under the root that is not one
// of Put's (another program's, or a location nested in this one) is not
// listed, and RemoveTemporary refuses it.
func TestTemporariesAreOnlyOurs(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	const id = "20261125-020000-k3f9"
	for _, key := range []string{
		"other/" + tmpPrefix + "foo",                              // another program's folder
		"billing/" + id + "/" + tmpPrefix + id + ".dump.zst-1234", // a location nested here
		tmpPrefix + "loose",                                       // at the root
		id + "/" + tmpPrefix + "20261124-020000-abcd.dump.zst-1",  // another id's name
	} {
		bigFile(t, st, key, 1)
		if tmps, err := st.Temporaries(ctx); err != nil || len(tmps) != 0 {
			t.Errorf("%s: Temporaries = %+v, %v; want none", key, tmps, err)
		}
		if err := st.RemoveTemporary(ctx, key); err == nil {
			t.Errorf("%s: RemoveTemporary removed it", key)
		}
	}
}

// A backup deleted while a restore reads it: the reader still gets every
// byte (the file is unlinked, not shrunk under it).
func TestDeleteWhileReadKeepsReaderWhole(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	const size = 4*shrinkStep + 7
	bigFile(t, st, "b/r.dump.zst", size)
	rc, err := st.Get(ctx, "b/r.dump.zst")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := st.Delete(ctx, "b/r.dump.zst"); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != size {
		t.Fatalf("the reader got %d of %d bytes (%v) after the delete", n, size, err)
	}
	if _, err := st.Get(ctx, "b/r.dump.zst"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
}

// failingReader yields n bytes, then calls stop (if set) and fails.
type failingReader struct {
	n    int64
	stop func()
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		if r.stop != nil {
			r.stop()
		}
		return 0, errors.New("the dump broke")
	}
	k := min(int64(len(p)), r.n)
	clear(p[:k])
	r.n -= k
	return int(k), nil
}

// A Put that fails part-way frees its partial file a step at a time too,
// also when its context ended (a cancelled or aborted backup), and leaves
// nothing behind.
func TestFailedPutFreedGently(t *testing.T) {
	for _, cancelled := range []bool{false, true} {
		st := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		const size = 6 * shrinkStep
		r := &failingReader{n: size}
		watched := make(chan bool, 1)
		putDone := make(chan struct{})
		r.stop = func() {
			if cancelled {
				cancel()
			}
			// Watch the temporary shrink: a size between all and nothing.
			go func() {
				stepped := false
				for {
					select {
					case <-putDone:
						watched <- stepped
						return
					default:
					}
					tmps, _ := filepath.Glob(filepath.Join(st.Root, "b", tmpPrefix+"*"))
					for _, p := range tmps {
						if info, err := os.Stat(p); err == nil && info.Size() > 0 && info.Size() < size {
							stepped = true
						}
					}
				}
			}()
		}
		_, err := st.Put(ctx, "b/20260101-000000-abcd.dump.zst", r)
		close(putDone)
		cancel()
		if err == nil {
			t.Fatal("Put of a failing reader succeeded")
		}
		if !<-watched {
			t.Errorf("cancelled=%v: the partial file was never seen part-freed: unlinked at once, not a step at a time", cancelled)
		}
		if tmps, err := st.Temporaries(context.Background()); err != nil || len(tmps) != 0 {
			t.Errorf("cancelled=%v: left behind: %+v, %v", cancelled, tmps, err)
		}
	}
}
