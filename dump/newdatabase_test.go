package dump_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// TestCaptureRefusesALostDatabase: a database dropped and re-created, or
// emptied, since the newest good backup is not backed up over its backups
// (retention keeps a day's newest and a fixed number of days: backups of
// the empty database, taken on schedule while the team restores, would
// replace the good ones) until capture --new-database accepts it, once.
func TestCaptureRefusesALostDatabase(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	db := pg.CreateDB(t)
	pg.Exec(t, db, `CREATE TABLE a AS SELECT generate_series(1, 10) AS x`)
	st := fileStore(t)
	o := options(t, pg, db, st)
	var began string
	o.Began = func(id string) { began = id }
	first, err := dump.Capture(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if began != first.ID {
		t.Errorf("Began was told %q, want the backup's id %s", began, first.ID)
	}
	if first.DatabaseOID == 0 {
		t.Fatal("the manifest records no database oid")
	}
	if _, err := dump.Capture(ctx, o); err != nil {
		t.Fatalf("a second backup of the same database: %v", err)
	}

	// Emptied, same oid. An extension's table left in it (PostGIS's
	// spatial_ref_sys, pg_cron's cron.job) is none of the database's own.
	pg.Exec(t, db, `CREATE EXTENSION dblink; CREATE TABLE ext_config (k text); ALTER EXTENSION dblink ADD TABLE ext_config`)
	if _, err := dump.Capture(ctx, o); err != nil {
		t.Fatalf("a backup with an extension's table added: %v", err)
	}
	pg.Exec(t, db, `DROP TABLE a`)
	_, err = dump.Capture(ctx, o)
	for _, want := range []string{"holds no tables", "held 1", "--new-database"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("capture of the emptied database: error lacks %q: %v", want, err)
		}
	}

	// Dropped and re-created under the same name, even with a table again.
	pg.Exec(t, "postgres", `DROP DATABASE `+db)
	pg.Exec(t, "postgres", `CREATE DATABASE `+db)
	pg.Exec(t, db, `CREATE TABLE b (y int)`)
	_, err = dump.Capture(ctx, o)
	for _, want := range []string{"dropped and re-created", "--new-database"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("capture of the re-created database: error lacks %q: %v", want, err)
		}
	}
	ms, err := storage.Catalog{Store: st}.Manifests(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Errorf("the location holds %d backups, want the 3 of the old database (the refused ones write nothing)", len(ms))
	}

	o.NewDatabase = true
	if _, err := dump.Capture(ctx, o); err != nil {
		t.Fatalf("capture --new-database: %v", err)
	}
	o.NewDatabase = false
	if _, err := dump.Capture(ctx, o); err != nil {
		t.Fatalf("the backup after --new-database: %v", err)
	}
}
