package dump_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// accessDenied is S3's answer to a request the credentials may not make
// (the SDK's API errors carry the code the same way).
type accessDenied struct{}

func (accessDenied) Error() string     { return "api error AccessDenied: Access Denied" }
func (accessDenied) ErrorCode() string { return "AccessDenied" }

// noList is a store whose credentials may read objects but not list them
// (an S3 role with s3:GetObject and no s3:ListBucket), or whose listing
// fails with err.
type noList struct {
	storage.Store
	err error
}

func (s noList) List(context.Context, string) ([]storage.Object, error) {
	return nil, s.err
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
	if _, err := dump.Restore(context.Background(), dump.RestoreOptions{Store: noList{st, accessDenied{}}, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir}); err != nil {
		t.Fatalf("restore with a store that may not list: %v", err)
	}
	if got := pg.QueryString(t, target, `SELECT count(*)::text FROM a`); got != "2" {
		t.Errorf("restored %s rows, want 2", got)
	}

	// Any other failure to list (the network, the store down) fails the
	// restore before it changes anything.
	other := pg.CreateDB(t)
	_, err = dump.Restore(context.Background(), dump.RestoreOptions{Store: noList{st, errors.New("connection reset by peer")}, Manifest: m, Target: conn(t, pg.URL(other)), PgBinDir: pg.BinDir})
	if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("restore whose listing fails: %v, want the failure and that nothing was changed", err)
	}
}
