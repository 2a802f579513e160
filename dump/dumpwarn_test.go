package dump_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureKeepsPgDumpWarnings: pg_dump succeeds but leaves something
// out, and says so only on its stderr (here: a role that is not a
// superuser cannot dump the database's subscriptions). The manifest's
// warnings carry it, so info and /healthz show a backup that is not
// everything, instead of it looking complete.
func TestCaptureKeepsPgDumpWarnings(t *testing.T) {
	t.Run("English", func(t *testing.T) { captureKeepsWarnings(t) })
	t.Run("German", func(t *testing.T) {
		// pg_dump's messages are translated (Debian ships the catalogs):
		// pgbackups keeps its children in English, or it could not read them.
		t.Setenv("LC_ALL", "C.UTF-8")
		t.Setenv("LANGUAGE", "de")
		captureKeepsWarnings(t)
	})
}

func captureKeepsWarnings(t *testing.T) {
	pg := testenv.PG(t)
	ensureRole(t, pg, "dumpwarn_reader", "reader-pw-1", "")
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE t (id int); INSERT INTO t VALUES (1); GRANT SELECT ON t TO dumpwarn_reader`)
	subscribed(t, pg, src, "dumpwarn_sub")
	st := fileStore(t)
	o := options(t, pg, src, st)
	o.Conn = conn(t, pg.URLAs("dumpwarn_reader", "reader-pw-1", src))
	o.SkipGlobals = true // pg_dumpall needs more than this role has
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(m.Warnings, func(w string) bool {
		return strings.HasPrefix(w, "pg_dump: ") && strings.Contains(w, "subscriptions not dumped")
	}) {
		t.Errorf("manifest warnings %q, want pg_dump's about the subscriptions it left out", m.Warnings)
	}
}
