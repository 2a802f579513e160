package s3_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// TestPutOnFullServer: a server out of space (VersityGW answers 507
// InsufficientStorage, as MinIO does) fails Put with storage.ErrNoSpace,
// whether the stream went as one PutObject or as a multipart upload, and
// leaves no upload behind.
func TestPutOnFullServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", data, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mount a 4 MiB tmpfs: %v (needs root)", err)
	}
	t.Cleanup(func() { unix.Unmount(data, unix.MNT_DETACH) })
	srv := testenv.S3At(t, data)
	st := newStore(t, srv, "backups")
	id := storage.NewID(time.Now())
	for _, c := range []struct {
		name string
		key  string
		size int64
	}{
		{"multipart upload", storage.DataKey(id), 12 << 20},  // three parts
		{"one PutObject", storage.GlobalsKey(id), 5<<20 - 1}, // under the 5 MiB part
	} {
		_, err := st.Put(t.Context(), c.key, stream(1, c.size))
		t.Logf("%s: %v", c.name, err)
		if !errors.Is(err, storage.ErrNoSpace) {
			t.Errorf("%s on a full server: %v; want storage.ErrNoSpace", c.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "out of space or over a quota") {
			t.Errorf("%s: error %q does not say what to do", c.name, err)
		}
	}
	if got := openUploads(t, srv); len(got) != 0 {
		t.Errorf("uploads left: %q", got)
	}
	// What fits still does: the store is full, not broken.
	if _, err := st.Put(t.Context(), storage.ManifestKey(id), strings.NewReader("{}")); err != nil {
		t.Errorf("small Put after: %v", err)
	}
}
