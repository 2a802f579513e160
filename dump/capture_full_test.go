package dump_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// fullForManifests is a store with room for a backup's data and globals
// but not for its manifest, completed or failed: the file system fills up
// with the data's last bytes.
type fullForManifests struct{ storage.Store }

func (f fullForManifests) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") {
		io.Copy(io.Discard, r)
		return 0, &fs.PathError{Op: "write", Path: key, Err: syscall.ENOSPC}
	}
	return f.Store.Put(ctx, key, r)
}

// TestCaptureManifestNoSpace: when the store answers that it is full for
// the manifest, and again for the failed one, no manifest was stored, and
// the data and globals just written are orphans that hold the room the
// next attempt needs: they go at once, not after ORPHAN_GRACE (24h), so the
// daemon's retry can succeed once the rest of the space is back.
func TestCaptureManifestNoSpace(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 1000)
	inner := fileStore(t)
	_, err := dump.Capture(context.Background(), options(t, pg, db, fullForManifests{inner}))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Capture = %v; want ENOSPC from the manifest write", err)
	}
	objs, lerr := inner.List(context.Background(), "")
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(objs) != 0 {
		t.Errorf("store holds %+v after a capture whose manifest did not fit; want nothing", objs)
	}
}
