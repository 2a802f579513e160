package dump_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// manifestsRefused is a store, as S3 full up would be, that took a
// backup's data and globals and answers every manifest that it has no
// room: an error that wraps storage.ErrNoSpace, and no errno.
type manifestsRefused struct{ storage.Store }

func (f manifestsRefused) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") {
		io.Copy(io.Discard, r)
		return 0, fmt.Errorf("s3: put %s: %w", key, storage.NoSpace(errors.New("api error InsufficientStorage: No space left on device.")))
	}
	return f.Store.Put(ctx, key, r)
}

// TestCaptureManifestNoSpaceS3: as TestCaptureManifestNoSpace, for a store
// whose "full" is storage.ErrNoSpace rather than ENOSPC (S3's 507): the
// data and globals go at once, not after ORPHAN_GRACE, holding the room
// the retry needs.
func TestCaptureManifestNoSpaceS3(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 1000)
	inner := fileStore(t)
	_, err := dump.Capture(context.Background(), options(t, pg, db, manifestsRefused{inner}))
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("Capture = %v; want storage.ErrNoSpace from the manifest write", err)
	}
	objs, lerr := inner.List(context.Background(), "")
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(objs) != 0 {
		t.Errorf("store holds %+v after a capture whose manifest did not fit; want nothing", objs)
	}
}
