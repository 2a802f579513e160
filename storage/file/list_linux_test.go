package file

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/storage"
)

// withoutDAC runs f on a thread without CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH, so file permissions bind it even when the tests run
// as root. Capabilities belong to threads: the goroutine stays locked to
// its thread, and the thread ends with it.
func withoutDAC(t *testing.T, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("drop capabilities: %v", err)
	}
}

// TestListPassesOverFoldersItCannotRead: the store's root is often a
// mounted volume with a root-owned lost+found the daemon's user may not
// read. Listing (and so every capture, list and prune) must pass over it;
// a backup's own folder that cannot be read is still an error, since
// passing over it would hide the backup.
func TestListPassesOverFoldersItCannotRead(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	id := storage.NewID(time.Now())
	key := storage.ManifestKey(id)
	if _, err := st.Put(ctx, key, bytes.NewReader([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	lost := filepath.Join(st.Root, "lost+found")
	if err := os.MkdirAll(filepath.Join(lost, "#1234"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{lost, filepath.Join(st.Root, id)} {
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
	}
	if err := os.Chmod(lost, 0); err != nil {
		t.Fatal(err)
	}

	var (
		objs, tmps      []storage.Object
		err, terr, rerr error
	)
	withoutDAC(t, func() {
		_, rerr = os.ReadDir(lost)
		objs, err = st.List(ctx, "")
		tmps, terr = st.Temporaries(ctx)
	})
	if rerr == nil {
		t.Fatal("lost+found is readable without DAC capabilities: the test proves nothing")
	}
	if err != nil || len(objs) != 1 || objs[0].Key != key {
		t.Errorf("List = %v, %v; want just %s", objs, err, key)
	}
	if terr != nil || len(tmps) != 0 {
		t.Errorf("Temporaries = %v, %v; want none", tmps, terr)
	}

	if err := os.Chmod(filepath.Join(st.Root, id), 0); err != nil {
		t.Fatal(err)
	}
	var byID error
	withoutDAC(t, func() {
		_, err = st.List(ctx, "")
		_, byID = st.List(ctx, id+"/")
	})
	for _, err := range []error{err, byID} {
		if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("List with the backup's folder unreadable = %v, want an error naming it", err)
		}
	}
}

// TestListByFolder: a prefix with a slash is looked up in its folder,
// which may not exist.
func TestListByFolder(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	for _, k := range []string{"a/1", "a/2", "ab/3", "b/c/4"} {
		if _, err := st.Put(ctx, k, bytes.NewReader([]byte(k))); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string]string{
		"a/": "a/1 a/2", "a": "a/1 a/2 ab/3", "b/c/": "b/c/4", "b/c/4": "b/c/4", "b/": "b/c/4", "c/": "", "": "a/1 a/2 ab/3 b/c/4", "a/2": "a/2",
	} {
		objs, err := st.List(ctx, prefix)
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		if err != nil || strings.Join(keys, " ") != want {
			t.Errorf("List(%q) = %q, %v; want %q", prefix, keys, err, want)
		}
	}
}
