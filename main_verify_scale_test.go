package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestVerifyManyMismatchesSummarised: when the counts of many tables
// differ (a schema per tenant is tens of thousands), verify lists a few and
// says how many, rather than a line per table.
func TestVerifyManyMismatchesSummarised(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `DO $$ BEGIN FOR i IN 1..60 LOOP
  EXECUTE format('CREATE TABLE t%s AS SELECT generate_series(1, %s) AS a', i, i);
END LOOP; END $$`)
	dir := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir, "PGBACKUPS_STORAGE_URL=" + dir, "PGBACKUPS_GLOBALS=false", "PGBACKUPS_HTTP_ADDR=off"}
	r := run(t, env, "capture")
	if r.code != exitOK {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	id := lastLine(r.stdout)
	// Every recorded count off by one: as a scratch database restored wrong.
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cat := storage.Catalog{Store: st}
	m, err := cat.Manifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tables) != 60 {
		t.Fatalf("manifest counts %d tables, want 60", len(m.Tables))
	}
	for i := range m.Tables {
		m.Tables[i].Rows++
	}
	if err := cat.WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "verify", id)
	if r.code != exitFailure || !strings.Contains(r.stderr, "60 of 60 tables") {
		t.Fatalf("verify: exit %d, want a failure naming 60 of 60 tables\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "(differs)"); n > 25 {
		t.Errorf("verify listed %d mismatching tables, want a few and a count:\n%s", n, r.stdout)
	}
	if !strings.Contains(r.stdout, "and 40 more tables differ (60 of 60 in all)") {
		t.Errorf("verify does not say how many more differ:\n%s", r.stdout)
	}
}
