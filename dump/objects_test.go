package dump_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestLargeObjectsCountedAndVerified: capture records how many large
// objects the archive holds (they are no table's rows: documents, images),
// and verify checks that number, in the archive and in a restored copy.
// A backup of an older pgbackups, which recorded none, is not failed.
func TestLargeObjectsCountedAndVerified(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.Exec(t, src, `SELECT lo_from_bytea(0, convert_to(repeat('x', i), 'UTF8')) FROM generate_series(1, 25) i`)
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	if m.LargeObjects == nil || *m.LargeObjects != 25 {
		t.Fatalf("manifest large objects %v, want 25", m.LargeObjects)
	}
	scratch := func() *dump.Conn { return ptr(conn(t, pg.URL(pg.CreateDB(t)))) }
	for _, to := range []*dump.Conn{nil, scratch()} {
		res, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: to})
		if err != nil || res.LargeObjects != 25 {
			t.Errorf("verify (restore-to %v): %v, %d large objects, want 25", to != nil, err, res.LargeObjects)
		}
	}

	bad := m
	n := *m.LargeObjects + 1
	bad.LargeObjects = &n
	for _, to := range []*dump.Conn{nil, scratch()} {
		_, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: bad, PgBinDir: pg.BinDir, RestoreTo: to})
		if !errors.Is(err, dump.ErrCountMismatch) || !strings.Contains(err.Error(), "large objects: recorded 26, found 25") {
			t.Errorf("verify of a wrong large-object count (restore-to %v): %v, want ErrCountMismatch naming both numbers", to != nil, err)
		}
	}

	old := m
	old.LargeObjects = nil
	if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: old, PgBinDir: pg.BinDir}); err != nil {
		t.Errorf("verify of a manifest without a large-object count: %v", err)
	}
}

// TestBackupDeletedSinceChosen: a backup deleted (manifest first, as
// delete and retention do) after a command read its manifest is reported
// as deleted, not as corrupt; an object missing beside its manifest is
// still damage.
func TestBackupDeletedSinceChosen(t *testing.T) {
	_, st, m := oneTableBackup(t)
	ctx := context.Background()
	if err := st.Delete(ctx, m.DataKey); err != nil {
		t.Fatal(err)
	}
	if _, err := dump.OpenBackup(ctx, st, m, nil); !errors.Is(err, dump.ErrCorrupt) {
		t.Errorf("data object missing beside its manifest: %v, want ErrCorrupt", err)
	}
	if err := st.Delete(ctx, storage.ManifestKey(m.ID)); err != nil {
		t.Fatal(err)
	}
	for what, f := range map[string]func() error{
		"data":    func() error { _, err := dump.OpenBackup(ctx, st, m, nil); return err },
		"globals": func() error { _, err := dump.ReadGlobals(ctx, st, m, nil); return err },
	} {
		if err := st.Delete(ctx, m.GlobalsKey); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		err := f()
		if errors.Is(err, dump.ErrCorrupt) || !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "deleted since it was chosen") {
			t.Errorf("%s of a backup deleted meanwhile: %v, want it called deleted", what, err)
		}
	}
}

// TestRestoreRefusesAHalfRestoredDatabase: a restore that failed part-way
// may leave only a schema, a function, a type or a large object behind,
// and pg_restore would stop at it ("already exists"), with advice to add
// --clean. Each counts as not empty, and the refusal names what is there.
func TestRestoreRefusesAHalfRestoredDatabase(t *testing.T) {
	pg, st, m := oneTableBackup(t)
	ctx := context.Background()
	for _, tc := range []struct{ sql, want string }{
		{`CREATE SCHEMA shop`, "1 schema"},
		{`CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'`, "1 function"},
		{`CREATE TYPE mood AS ENUM ('ok')`, "1 type"},
		{`SELECT lo_from_bytea(0, 'x')`, "1 large object"},
	} {
		target := pg.CreateDB(t)
		pg.Exec(t, target, tc.sql)
		_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir})
		if err == nil || !strings.Contains(err.Error(), "is not empty ("+tc.want+")") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("restore into a database holding only %q: %v, want it refused naming %s", tc.sql, err, tc.want)
		}
	}
	// A new database is empty, whatever template1 gave it: extensions'
	// objects (dblink's and tablefunc's composite types, functions) are not
	// the database's own.
	target := pg.CreateDB(t)
	pg.Exec(t, target, `CREATE EXTENSION dblink; CREATE EXTENSION tablefunc; CREATE EXTENSION pgcrypto; CREATE EXTENSION citext`)
	if _, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir}); err != nil {
		t.Errorf("restore into a new database holding extensions: %v", err)
	}
}

// TestRestoreSaysWhatToDo: the two mistakes a restore in a hurry makes
// get the way out, not only the server's words: a target database not
// created first, and a cluster without the backup's roles.
func TestRestoreSaysWhatToDo(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	role := "owner_" + src
	pg.Exec(t, src, `CREATE ROLE `+role+`; CREATE TABLE a AS SELECT 1 AS x; ALTER TABLE a OWNER TO `+role)
	st := fileStore(t)
	o := options(t, pg, src, st)
	o.SkipGlobals = true
	m, err := dump.Capture(ctx, o)
	if err != nil {
		t.Fatal(err)
	}

	_, err = dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(src+"_never_created")), PgBinDir: pg.BinDir})
	if err == nil || !strings.Contains(err.Error(), "createdb it first") {
		t.Errorf("restore into a database that does not exist: %v, want to be told to create it", err)
	}
	if se := (*dump.RedactedError)(nil); !errors.As(err, &se) || se.Code != "3D000" {
		t.Errorf("restore into a database that does not exist: %v; want the server's SQLSTATE 3D000 in its chain", err)
	}

	pg.Exec(t, src, `DROP OWNED BY `+role+`; DROP ROLE `+role)
	_, err = dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(pg.CreateDB(t))), PgBinDir: pg.BinDir})
	for _, want := range []string{`role "` + role + `" does not exist`, "--with-globals", "--no-owner --no-acl", "drop and re-create the target database"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore without the backup's role: error lacks %q: %v", want, err)
		}
	}
}

// TestRestoreDatabaseProperties: pg_restore into an existing database
// leaves out the database's own owner, settings, grants and comment (it
// applies them only with --create). With DatabaseProperties they follow,
// renamed to the target; without, the target keeps its own.
func TestRestoreDatabaseProperties(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	owner := "dbo_" + src
	pg.Exec(t, "postgres", `CREATE ROLE `+owner+`; ALTER DATABASE `+src+` OWNER TO `+owner+`;
		ALTER DATABASE `+src+` SET work_mem = '64MB'; ALTER DATABASE `+src+` CONNECTION LIMIT 50;
		REVOKE CONNECT, TEMPORARY ON DATABASE `+src+` FROM PUBLIC;
		COMMENT ON DATABASE `+src+` IS 'it''s prod, DATABASE `+src+`';
		CREATE ROLE gone_`+src+`; GRANT CONNECT ON DATABASE `+src+` TO gone_`+src+`;
		ALTER ROLE `+owner+` IN DATABASE `+src+` SET search_path = a, b`)
	pg.Exec(t, src, `CREATE TABLE a AS SELECT 1 AS x`)
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	// A role the target cluster lacks: its GRANT fails, and must not take
	// the REVOKE ... FROM PUBLIC of the same entry with it.
	pg.Exec(t, "postgres", `REVOKE CONNECT ON DATABASE `+src+` FROM gone_`+src+`; DROP ROLE gone_`+src)
	props := func(db string) string {
		return pg.QueryString(t, "postgres", `SELECT pg_get_userbyid(d.datdba) || ' | ' || d.datconnlimit || ' | ' ||
			coalesce((SELECT string_agg(array_to_string(s.setconfig, ','), ';' ORDER BY s.setrole) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '') || ' | ' ||
			coalesce(shobj_description(d.oid, 'pg_database'), '') || ' | ' ||
			has_database_privilege('public', d.oid, 'CONNECT')::text
			FROM pg_database d WHERE d.datname = '`+db+`'`)
	}
	want := props(src)

	plain := pg.CreateDB(t)
	before := props(plain)
	if _, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(plain)), PgBinDir: pg.BinDir}); err != nil {
		t.Fatal(err)
	}
	if got := props(plain); got != before {
		t.Errorf("a restore without DatabaseProperties changed the database's own properties: %q, was %q", got, before)
	}

	target := pg.CreateDB(t)
	res, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, DatabaseProperties: true, Jobs: 2, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DatabaseNotes) != 1 || !strings.Contains(res.DatabaseNotes[0], "GRANT CONNECT ON DATABASE") || !strings.Contains(res.DatabaseNotes[0], "does not exist") {
		t.Errorf("notes %q, want one naming the GRANT to the missing role", res.DatabaseNotes)
	}
	if got := props(target); got != want || res.DatabaseApplied < 5 {
		t.Errorf("properties of the target %q (notes %q, %d applied), want the source's %q", got, res.DatabaseNotes, res.DatabaseApplied, want)
	}
}

// oneTableBackup takes a backup of a new database holding one table of one
// row, into a file store of its own.
func oneTableBackup(t *testing.T) (*testenv.Postgres, *file.Store, storage.Manifest) {
	t.Helper()
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE a AS SELECT 1 AS x`)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	return pg, st, m
}

// TestRestoreDatabasePropertiesOfPlainDatabase: a database with no settings
// or grants of its own has no DATABASE PROPERTIES entry in pg_dump 11+'s
// archive; that is nothing to warn about (the note about pg_dump before 11
// alarmed an operator mid-restore).
func TestRestoreDatabasePropertiesOfPlainDatabase(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE a AS SELECT 1 AS x`)
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	target := pg.CreateDB(t)
	res, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, DatabaseProperties: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.DatabaseNotes {
		if strings.Contains(n, "pg_dump before 11") {
			t.Errorf("note %q about a pg_dump %s archive", n, m.PgDumpVersion)
		}
	}
}
