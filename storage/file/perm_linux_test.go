package file

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestExposedRoot: in a root every user may write to (no sticky bit),
// anyone can rename a backup's 0700 folder away and put one of theirs (or
// a symlink) in its place for the rest of the backup to land in. Such a
// root is reported (capture and the daemon warn), not refused: a backup
// not taken is worse.
func TestExposedRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	st, err := New(dir)
	if err != nil {
		t.Fatalf("New(0777 %s) = %v, want it opened", dir, err)
	}
	if err := st.Exposed(); err == nil || !strings.Contains(err.Error(), "writable by every user") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Exposed() of 0777 %s = %v, want it reported, naming the directory", dir, err)
	}
	// Through a symlink, too: the mode checked is the directory's.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if st, err := New(link); err != nil || st.Exposed() == nil {
		t.Fatalf("New(symlink to a 0777 directory): %v, exposure not reported", err)
	}

	// The sticky bit (as /tmp) stops others renaming or removing our
	// entries; group write (a volume with fsGroup) is the operator's call.
	for _, mode := range []fs.FileMode{0o777 | fs.ModeSticky, 0o770, 0o750, 0o700} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := st.Exposed(); err != nil {
			t.Errorf("Exposed() at %v = %v, want nil", mode, err)
		}
	}
}

// TestWrittenModesUnderAnyUmask: the store's directories are 0700 and its
// objects 0600 (data, manifests, and globals, which hold role password
// hashes), temporaries included, whatever the umask.
func TestWrittenModesUnderAnyUmask(t *testing.T) {
	ctx := context.Background()
	for _, mask := range []int{0o000, 0o022, 0o077} {
		old := syscall.Umask(mask)
		root := filepath.Join(t.TempDir(), "a", "b")
		st, err := New(root)
		if err != nil {
			syscall.Umask(old)
			t.Fatal(err)
		}
		id := storage.NewID(time.Now())
		var tmpMode fs.FileMode
		for _, key := range []string{storage.DataKey(id), storage.GlobalsKey(id), storage.ManifestKey(id)} {
			r := readerFunc(func(p []byte) (int, error) {
				// Mid-Put: look at the temporary file being written.
				if tmpMode == 0 {
					if objs, err := st.Temporaries(ctx); err == nil && len(objs) == 1 {
						if fi, err := os.Lstat(filepath.Join(st.Root, objs[0].Key)); err == nil {
							tmpMode = fi.Mode()
						}
					}
				}
				return bytes.NewReader([]byte("secret")).Read(p)
			})
			if _, err := st.Put(ctx, key, &onceReader{r: r}); err != nil {
				syscall.Umask(old)
				t.Fatal(err)
			}
		}
		syscall.Umask(old)
		if tmpMode.Perm() != 0o600 {
			t.Errorf("umask %03o: temporary file mode %v, want 0600", mask, tmpMode)
		}
		for _, p := range []string{filepath.Dir(root), root, filepath.Join(root, id)} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("umask %03o: %s: %v %v, want 0700", mask, p, fi.Mode(), err)
			}
		}
		for _, key := range []string{storage.DataKey(id), storage.GlobalsKey(id), storage.ManifestKey(id)} {
			if fi, err := os.Stat(filepath.Join(root, key)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("umask %03o: %s: %v %v, want 0600", mask, key, fi.Mode(), err)
			}
		}
	}
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// onceReader reads r once, then reports EOF.
type onceReader struct {
	r    readerFunc
	done bool
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.done {
		return 0, io.EOF
	}
	o.done = true
	return o.r(p)
}
