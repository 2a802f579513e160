package dump_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// noList is a store whose credentials may read objects but not list them
// (an S3 role with s3:GetObject and no s3:ListBucket).
type noList struct{ storage.Store }

func (noList) List(context.Context, string) ([]storage.Object, error) {
	return nil, errors.New("AccessDenied: not allowed to list the bucket")
}

// TestRestoreWithoutListPermission: restoring a named backup reads its
// objects; the listing that checks them up front is a help, and a role
// that may not list restores as it did before that check existed.
func TestRestoreWithoutListPermission(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2)`)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	target := pg.CreateDB(t)
	if _, err := dump.Restore(context.Background(), dump.RestoreOptions{Store: noList{st}, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir}); err != nil {
		t.Fatalf("restore with a store that may not list: %v", err)
	}
	if got := pg.QueryString(t, target, `SELECT count(*)::text FROM a`); got != "2" {
		t.Errorf("restored %s rows, want 2", got)
	}
}
