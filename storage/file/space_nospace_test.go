package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pgbackups/pgbackups/storage"
)

// TestFullIsErrNoSpace: the file store's "full" answers wrap
// storage.ErrNoSpace, which the capture branches on whatever the backend,
// and still the errno; other errors do not.
func TestFullIsErrNoSpace(t *testing.T) {
	dir := tinyTmpfs(t, "size=256k")
	st, err := New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Put(context.Background(), storage.DataKey("20261207-020000-full"), bytes.NewReader(make([]byte, 1<<20)))
	if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Put of 1 MiB into 256 KiB = %v; want storage.ErrNoSpace and ENOSPC", err)
	}

	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := st.full(fmt.Errorf("file: put x: %w", &fs.PathError{Op: "write", Path: "x", Err: errno}))
		if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, errno) {
			t.Errorf("full(%v) = %v; want storage.ErrNoSpace and the errno", errno, err)
		}
	}
	if err := st.full(fmt.Errorf("file: put x: %w", syscall.EACCES)); errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("full(EACCES) = %v, which Is storage.ErrNoSpace", err)
	}
}
