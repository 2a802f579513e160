package dump_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// noData is a store that lists and reads a backup's manifest and globals
// but fails to open its data object (a policy that allows one prefix and
// not another, an object deleted since the listing, the network).
type noData struct{ storage.Store }

func (s noData) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.HasSuffix(key, ".dump.zst") {
		return nil, errors.New("connection reset by peer")
	}
	return s.Store.Get(ctx, key)
}

// TestRestoreOpensDataBeforeGlobals: a streamed restore --with-globals
// opens the data object before it applies the backup's roles, so a data
// object that cannot be read fails the restore with nothing changed, not
// after the roles are in the target's cluster.
func TestRestoreOpensDataBeforeGlobals(t *testing.T) {
	pg := testenv.PG(t)
	st, m := withGlobals(t, pg, "CREATE ROLE opened_before_globals;\n")
	target := pg.CreateDB(t)
	_, err := dump.Restore(context.Background(), dump.RestoreOptions{
		Store: noData{st}, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, WithGlobals: true,
	})
	if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("restore --with-globals whose data object cannot be opened: %v, want the failure and that nothing was changed", err)
	}
	if got := pg.QueryString(t, "postgres", `SELECT count(*)::text FROM pg_roles WHERE rolname = 'opened_before_globals'`); got != "0" {
		pg.Exec(t, "postgres", `DROP ROLE opened_before_globals`)
		t.Errorf("the backup's role was created before the restore failed on its data")
	}
}
