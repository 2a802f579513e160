package dump_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

func conn(t *testing.T, raw string) dump.Conn {
	t.Helper()
	c, err := dump.ParseConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRestoreAndVerify(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 2000)
	want := pg.TableChecksums(t, src)
	ctx := context.Background()

	stores := map[string]func(t *testing.T) storage.Store{
		"file": func(t *testing.T) storage.Store { return fileStore(t) },
		"s3":   func(t *testing.T) storage.Store { st, _ := s3Store(t); return st },
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			st := mk(t)
			m, err := dump.Capture(ctx, options(t, pg, src, st))
			if err != nil {
				t.Fatal(err)
			}
			opts := func(db string) dump.RestoreOptions {
				return dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(db)), PgBinDir: pg.BinDir}
			}

			// Streamed: no temporary file.
			streamed := pg.CreateDB(t)
			res, err := dump.Restore(ctx, opts(streamed))
			if err != nil {
				t.Fatal(err)
			}
			if res.Database != streamed || res.Tables != 3 || res.Rows != 2000+5000+1 || res.TempFile != "" {
				t.Fatalf("result %+v", res)
			}
			if d := testenv.DiffChecksums(want, pg.TableChecksums(t, streamed)); d != "" {
				t.Fatalf("streamed restore differs:\n%s", d)
			}

			// Parallel: through a temporary file, removed afterwards.
			parallel := pg.CreateDB(t)
			o := opts(parallel)
			o.Jobs, o.TempDir = 3, t.TempDir()
			res, err = dump.Restore(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.TempFile == "" || filepath.Dir(res.TempFile) != o.TempDir || res.Tables != 3 {
				t.Fatalf("result %+v", res)
			}
			if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
				t.Fatalf("temporary archive left behind: %v", left)
			}
			if d := testenv.DiffChecksums(want, pg.TableChecksums(t, parallel)); d != "" {
				t.Fatalf("parallel restore differs:\n%s", d)
			}

			// Over a database that already holds the objects: refused
			// before anything is changed, then replaced with Clean.
			before := pg.TableChecksums(t, streamed)
			_, err = dump.Restore(ctx, opts(streamed))
			if err == nil || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(err.Error(), "--clean") ||
				!strings.Contains(err.Error(), "nothing was changed") {
				t.Fatalf("restore over a full database: %v", err)
			}
			if d := testenv.DiffChecksums(before, pg.TableChecksums(t, streamed)); d != "" {
				t.Fatalf("the refused restore changed the target:\n%s", d)
			}
			pg.Exec(t, streamed, `DELETE FROM billing.invoices WHERE id > 10; CREATE TABLE public.extra (x int)`)
			o = opts(streamed)
			o.Clean = true
			if _, err := dump.Restore(ctx, o); err != nil {
				t.Fatal(err)
			}
			got := pg.TableChecksums(t, streamed)
			delete(got, "public.extra") // not in the backup: --clean leaves it
			if d := testenv.DiffChecksums(want, got); d != "" {
				t.Fatalf("clean restore differs:\n%s", d)
			}

			// --clean drops only the backup's own objects: one added since
			// in a schema of the backup blocks dropping that schema.
			pg.Exec(t, streamed, `CREATE TABLE app.extra (x int)`)
			if _, err := dump.Restore(ctx, o); err == nil || !strings.Contains(err.Error(), "objects the backup does not") {
				t.Fatalf("clean restore over an extra object: %v", err)
			}

			// Verify, by reading the archive and by restoring it.
			vr, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir})
			if err != nil {
				t.Fatal(err)
			}
			if vr.Entries < 10 || len(vr.Counts) != 3 || !vr.Archive.Complete {
				t.Fatalf("verify: %+v", vr)
			}
			scratch := conn(t, pg.URL(pg.CreateDB(t)))
			vr, err = dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch})
			if err != nil {
				t.Fatal(err)
			}
			if vr.Restored == nil || len(vr.Counts) != 3 {
				t.Fatalf("verify --restore-to: %+v", vr)
			}
			for _, c := range vr.Counts {
				if !c.OK {
					t.Errorf("count %+v", c)
				}
			}
			// The scratch database now holds the backup: a second verify
			// into it is refused before anything runs.
			if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch}); err == nil || !strings.Contains(err.Error(), "not empty") {
				t.Fatalf("verify into a full scratch database: %v", err)
			}

			// A manifest whose counts disagree with the archive fails verify.
			bad := m
			bad.Tables = append([]storage.TableCount(nil), m.Tables...)
			bad.Tables[0].Rows++
			vr, err = dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: bad, PgBinDir: pg.BinDir})
			if !errors.Is(err, dump.ErrCountMismatch) {
				t.Fatalf("verify with a wrong count: %v", err)
			}
		})
	}
}

// richBackup captures a SeedRich database of 1000 users into a local
// store.
func richBackup(t *testing.T) (*testenv.Postgres, *file.Store, storage.Manifest) {
	t.Helper()
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 1000)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	return pg, st, m
}

func TestRestoreRejectsDamage(t *testing.T) {
	pg, st, m := richBackup(t)
	ctx := context.Background()
	path := st.Location(m.DataKey)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(orig)
	flipped[len(flipped)/2] ^= 0x20
	damage := map[string][]byte{
		"flipped byte": flipped,
		"truncated":    orig[:len(orig)*2/3],
		"empty":        {},
		"extra bytes":  append(bytes.Clone(orig), 0),
	}
	for name, data := range damage {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(path, orig, 0o600) })
			var out bytes.Buffer
			if _, err := dump.CopyBackup(ctx, st, m, nil, &out); !errors.Is(err, dump.ErrCorrupt) {
				t.Errorf("CopyBackup: %v, want ErrCorrupt", err)
			}
			if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir}); !errors.Is(err, dump.ErrCorrupt) {
				t.Errorf("Verify: %v, want ErrCorrupt", err)
			}
			target := pg.CreateDB(t)
			_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir})
			if !errors.Is(err, dump.ErrCorrupt) {
				t.Fatalf("restore of a damaged backup: %v, want ErrCorrupt", err)
			}
		})
	}

	t.Run("clean over a live copy", func(t *testing.T) {
		// --clean drops the backup's objects before recreating them, and a
		// streamed restore learns the checksums only at the end: damage
		// found then must not leave the target with its tables dropped.
		target := pg.CreateDB(t)
		if _, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir}); err != nil {
			t.Fatal(err)
		}
		pg.Exec(t, target, `INSERT INTO app.users (email, name, profile, balance, created_at) VALUES ('marker@example.com', 'marker', '{}', 0, now())`)
		damaged := bytes.Clone(orig)
		damaged[len(damaged)*3/4] ^= 0x20
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(path, orig, 0o600) })
		_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Clean: true})
		if !errors.Is(err, dump.ErrCorrupt) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("restore --clean of a damaged backup: %v, want ErrCorrupt and nothing changed", err)
		}
		if n := pg.QueryString(t, target, `SELECT count(*)::text FROM app.users WHERE email = 'marker@example.com'`); n != "1" {
			t.Fatalf("the target was changed: %s marker rows after the refused restore, want 1", n)
		}
	})

	t.Run("failed backup", func(t *testing.T) {
		failed := m
		failed.Status, failed.Error = storage.StatusFailed, "pg_dump: exit status 1"
		if _, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: failed, Target: conn(t, pg.URL(pg.CreateDB(t)))}); err == nil || !strings.Contains(err.Error(), "did not complete") {
			t.Fatalf("restore of a failed backup: %v", err)
		}
	})

	t.Run("unreachable target", func(t *testing.T) {
		target := conn(t, "postgres://someone:hunter2-target@127.0.0.1:1/gone?sslmode=disable&connect_timeout=3")
		_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: target, PgBinDir: pg.BinDir})
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("error must name the target and hide its password: %v", err)
		}
	})

	t.Run("globals asked for but absent", func(t *testing.T) {
		none := m
		none.GlobalsKey, none.GlobalsSHA256 = "", ""
		target := pg.CreateDB(t)
		_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: none, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, WithGlobals: true})
		if !errors.Is(err, dump.ErrNoGlobals) {
			t.Fatalf("err %v, want ErrNoGlobals", err)
		}
		if n := pg.QueryString(t, target, `SELECT count(*)::text FROM pg_class WHERE relnamespace <> ALL (ARRAY['pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace])`); n != "0" {
			t.Fatalf("the target was touched: %s relations", n)
		}
	})
}

func TestRewriteGlobals(t *testing.T) {
	in := `SET standard_conforming_strings = on;

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi';
CREATE ROLE "Odd ""Role""";
ALTER ROLE "Odd ""Role""" WITH NOLOGIN;
CREATE ROLE o'brien;
ALTER ROLE other WITH LOGIN;
CREATE ROLE lonely;
COMMENT ON ROLE app_owner IS 'owns $pgbackups$ things';
GRANT app_owner TO "Odd ""Role""" GRANTED BY postgres;
`
	out := string(dump.RewriteGlobals([]byte(in)))
	for _, want := range []string{
		// Refused for want of privilege (a managed service's CREATEROLE
		// user may not name NOSUPERUSER): again without it.
		"DO $pgbackups$\nBEGIN\n\tIF to_regrole('app_owner') IS NULL THEN\n\t\tCREATE ROLE app_owner;\n" +
			"\t\tBEGIN\n\t\t\tALTER ROLE app_owner WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi';\n" +
			"\t\tEXCEPTION WHEN insufficient_privilege THEN\n\t\t\tALTER ROLE app_owner WITH INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi';\n\t\tEND;\n" +
			"\tELSE\n\t\tRAISE NOTICE 'role % already exists: not re-created (its password and attributes are kept)', 'app_owner';\n\tEND IF;\nEND\n$pgbackups$;\n",
		// Nothing only a superuser may name: as pg_dumpall wrote it.
		"\t\tCREATE ROLE \"Odd \"\"Role\"\"\";\n\t\tALTER ROLE \"Odd \"\"Role\"\"\" WITH NOLOGIN;\n\tELSE",
		// Unpaired lines pass through untouched.
		"CREATE ROLE o'brien;\nALTER ROLE other WITH LOGIN;\nCREATE ROLE lonely;\nCOMMENT ON ROLE app_owner IS 'owns $pgbackups$ things';\nGRANT app_owner",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "DO $") != 2 {
		t.Errorf("want two DO blocks:\n%s", out)
	}
	// CREATEDB is left out only if the retry without REPLICATION is
	// refused too (PostgreSQL 16+, a restoring role without CREATEDB):
	// older versions let a CREATEROLE user grant it.
	out = string(dump.RewriteGlobals([]byte("CREATE ROLE app;\nALTER ROLE app WITH NOSUPERUSER CREATEDB LOGIN REPLICATION PASSWORD 'x';\n")))
	for _, want := range []string{
		"\t\t\t\tALTER ROLE app WITH CREATEDB LOGIN PASSWORD 'x';\n\t\t\t\tRAISE WARNING 'role %: created without REPLICATION (this role may not grant them)', 'app';\n",
		"\t\t\t\tALTER ROLE app WITH LOGIN PASSWORD 'x';\n\t\t\t\tRAISE WARNING 'role %: created without REPLICATION CREATEDB (this role may not grant them)', 'app';\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestApplyGlobalsTolerance(t *testing.T) {
	// A role that exists keeps its attributes and password: applying
	// another cluster's globals must not lock out the operator.
	pg := testenv.NewCluster(t)
	ctx := context.Background()
	pg.Exec(t, "postgres", `CREATE ROLE keeper LOGIN PASSWORD 'keeper-pw-1'`)
	st, m := withGlobals(t, pg, `CREATE ROLE keeper;
ALTER ROLE keeper WITH NOLOGIN PASSWORD 'other-cluster-pw';
CREATE ROLE fresh_role;
ALTER ROLE fresh_role WITH NOLOGIN;
CREATE TABLESPACE nowhere OWNER fresh_role LOCATION '/nonexistent/pgbackups-test';
GRANT fresh_role TO keeper;
`)
	target := pg.CreateDB(t)
	res, err := dump.Restore(ctx, dump.RestoreOptions{
		Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, WithGlobals: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.GlobalsNotes, "\n")
	if !strings.Contains(notes, "role keeper already exists") || !strings.Contains(notes, "ERROR") || !strings.Contains(notes, "/nonexistent/pgbackups-test") {
		t.Errorf("notes should name the kept role and the refused tablespace:\n%s", notes)
	}
	c, err := pgx.Connect(ctx, pg.URLAs("keeper", "keeper-pw-1", target))
	if err != nil {
		t.Fatalf("keeper can no longer log in with its own password: %v", err)
	}
	c.Close(ctx)
	if got := pg.QueryString(t, "postgres", `SELECT string_agg(r.rolname, ',') FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles u ON u.oid = a.member WHERE u.rolname = 'keeper'`); got != "fresh_role" {
		t.Fatalf("keeper is member of %q, want fresh_role", got)
	}
}

// TestRestoreIntoATemplatedDatabase: a new database copied from a template
// with an extension has that extension's relations; they are not data, and
// the restore (whose dump creates the extension IF NOT EXISTS) goes on.
func TestRestoreIntoATemplatedDatabase(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE EXTENSION pg_buffercache; CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2)`)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	target := pg.CreateDB(t)
	pg.Exec(t, target, `CREATE EXTENSION pg_buffercache`) // a view in public, as template1 would give it
	if _, err := dump.Restore(context.Background(), dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir}); err != nil {
		t.Fatalf("restore into a database holding only an extension's relations: %v", err)
	}
	if got := pg.QueryString(t, target, `SELECT count(*)::text FROM a`); got != "2" {
		t.Errorf("restored %s rows, want 2", got)
	}
}

// TestRestoreStoppedByAStatement: pg_restore stops at the first failing
// statement (here the owner of a table, a role the target cluster does
// not have) and what it restored before stays: the error says so.
func TestRestoreStoppedByAStatement(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, "postgres", `DO $$ BEGIN CREATE ROLE partly_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.Exec(t, src, `CREATE TABLE a (x int); INSERT INTO a VALUES (1); CREATE TABLE b (y int); ALTER TABLE b OWNER TO partly_owner`)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCluster(t) // no partly_owner there
	target := other.CreateDB(t)
	_, err = dump.Restore(context.Background(), dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, other.URL(target)), PgBinDir: pg.BinDir})
	if err == nil || !strings.Contains(err.Error(), "partly_owner") || !strings.Contains(err.Error(), "may be partly restored") {
		t.Fatalf("restore with a missing owner: %v, want pg_restore's error and that the target may be partly restored", err)
	}
}

// withGlobals captures a small database of pg without its globals, and
// stores sql as the backup's globals instead.
func withGlobals(t *testing.T, pg *testenv.Postgres, sql string) (*file.Store, storage.Manifest) {
	t.Helper()
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE t (a int); INSERT INTO t VALUES (1)`)
	st := fileStore(t)
	o := options(t, pg, src, st)
	o.SkipGlobals = true
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m.GlobalsKey, m.GlobalsSHA256 = putGlobals(t, st, m.ID, sql)
	return st, m
}

// TestApplyGlobalsKeepsEveryMessage: a target with hundreds of the
// backup's roles answers each with a NOTICE; an ERROR before them is still
// among the notes.
func TestApplyGlobalsKeepsEveryMessage(t *testing.T) {
	pg := testenv.NewCluster(t)
	ctx := context.Background()
	pg.Exec(t, "postgres", `DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE ROLE many_%s', i); END LOOP; END $$`)
	var globals strings.Builder
	globals.WriteString("CREATE TABLESPACE early OWNER postgres LOCATION '/nonexistent/pgbackups-early';\n")
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&globals, "CREATE ROLE many_%d;\nALTER ROLE many_%d WITH NOLOGIN;\n", i, i)
	}
	st, m := withGlobals(t, pg, globals.String())
	res, err := dump.Restore(ctx, dump.RestoreOptions{
		Store: st, Manifest: m, Target: conn(t, pg.URL(pg.CreateDB(t))), PgBinDir: pg.BinDir, WithGlobals: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.GlobalsNotes, "\n")
	if !strings.Contains(notes, "/nonexistent/pgbackups-early") || strings.Count(notes, "already exists: not re-created (its password and attributes are kept)") != 300 {
		t.Errorf("notes lack the first ERROR or some of the 300 NOTICEs (%d notes):\n%.2000s", len(res.GlobalsNotes), notes)
	}
}

// TestApplyGlobalsAsNonSuperuser: the CREATEROLE user of a managed
// service gets the backup's roles, with their passwords, without the
// attributes only a superuser may grant (and a warning saying which), and
// no message shows a password hash.
func TestApplyGlobalsAsNonSuperuser(t *testing.T) {
	pg := testenv.NewCluster(t)
	ctx := context.Background()
	pg.Exec(t, "postgres", `CREATE ROLE restorer LOGIN CREATEROLE CREATEDB PASSWORD 'restorer-pw'`)
	const hash = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVka2V5:c2VydmVya2V5"
	st, m := withGlobals(t, pg, `CREATE ROLE app_user;
ALTER ROLE app_user WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD '`+hash+`';
CREATE ROLE replicator;
ALTER ROLE replicator WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN REPLICATION NOBYPASSRLS PASSWORD '`+hash+`';
CREATE ROLE refused;
ALTER ROLE refused WITH SUPERUSER;
ALTER ROLE app_user SET search_path TO 'x';
ALTER ROLE restorer WITH PASSWORD '`+hash+`' SUPERUSER;
`)
	pg.Exec(t, "postgres", `CREATE DATABASE nonsuper_target OWNER restorer`)
	res, err := dump.Restore(ctx, dump.RestoreOptions{
		Store: st, Manifest: m, Target: conn(t, pg.URLAs("restorer", "restorer-pw", "nonsuper_target")), PgBinDir: pg.BinDir, WithGlobals: true, NoOwner: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.GlobalsNotes, "\n")
	if got := pg.QueryString(t, "postgres", `SELECT string_agg(rolname || ':' || rolcanlogin || ':' || rolreplication || ':' || (rolpassword IS NOT NULL), ' ' ORDER BY rolname) FROM pg_authid WHERE rolname IN ('app_user', 'replicator', 'refused')`); got != "app_user:true:false:true refused:false:false:false replicator:true:false:true" {
		t.Errorf("roles as created: %q\nnotes:\n%s", got, notes)
	}
	if !strings.Contains(notes, "role replicator: created without REPLICATION") || !strings.Contains(notes, "role refused: created without SUPERUSER") {
		t.Errorf("no warning names the attributes left out:\n%s", notes)
	}
	if strings.Contains(notes, "c2VydmVya2V5") || !strings.Contains(notes, "ERROR") {
		t.Errorf("notes show a password hash, or the refused ALTER of restorer is not reported:\n%s", notes)
	}
}

// putGlobals stores sql as backup id's globals and returns the key and sha256.
func putGlobals(t *testing.T, st storage.Store, id, sql string) (string, string) {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	b := enc.EncodeAll([]byte(sql), nil)
	enc.Close()
	key := storage.GlobalsKey(id)
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return key, hex.EncodeToString(sum[:])
}

// inPlaceTablespace creates a tablespace in pg's data directory
// (allow_in_place_tablespaces, so no directory needs the server's owner)
// and returns its name.
func inPlaceTablespace(t *testing.T, pg *testenv.Postgres, db string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(db)+"&allow_in_place_tablespaces=on")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	name := "ts_" + db
	if _, err := c.Exec(ctx, "CREATE TABLESPACE "+name+" LOCATION ''"); err != nil {
		t.Fatal(err)
	}
	return name
}

// tablespaceBackup captures a database with a table in a tablespace.
func tablespaceBackup(t *testing.T, pg *testenv.Postgres) (ts string, st storage.Store, m storage.Manifest) {
	t.Helper()
	src := pg.CreateDB(t)
	ts = inPlaceTablespace(t, pg, src)
	pg.Exec(t, src, `CREATE TABLE a (x int) TABLESPACE `+ts+`; INSERT INTO a VALUES (1), (2); CREATE TABLE b (y int); INSERT INTO b VALUES (3)`)
	st = fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	return ts, st, m
}

// TestVerifyRestoreToAnotherServer: verify --restore-to restores without
// tablespaces, so its scratch database may be on a server that lacks the
// source's.
func TestVerifyRestoreToAnotherServer(t *testing.T) {
	pg := testenv.PG(t)
	_, st, m := tablespaceBackup(t, pg)
	other := testenv.NewCluster(t) // no such tablespace there
	scratch := conn(t, other.URL(other.CreateDB(t)))
	vr, err := dump.Verify(context.Background(), dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch})
	if err != nil {
		t.Fatalf("verify --restore-to a scratch database on another server: %v", err)
	}
	if vr.Restored == nil || vr.Restored.Rows != 3 || len(vr.Counts) != 2 {
		t.Fatalf("verify --restore-to: %+v", vr)
	}
}

// TestRestoreNoTablespaces: a database with a table in a tablespace
// restores onto a server without it with NoTablespaces; without, the error
// says to add it.
func TestRestoreNoTablespaces(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	ts, st, m := tablespaceBackup(t, pg)
	other := testenv.NewCluster(t)
	target := other.CreateDB(t)
	o := dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, other.URL(target)), PgBinDir: pg.BinDir}
	if _, err := dump.Restore(ctx, o); err == nil || !strings.Contains(err.Error(), ts) || !strings.Contains(err.Error(), "add --no-tablespaces") {
		t.Fatalf("restore onto a server without the tablespace: %v; want pg_restore's error and the advice to add --no-tablespaces", err)
	}
	target = other.CreateDB(t)
	o.Target, o.NoTablespaces = conn(t, other.URL(target)), true
	if _, err := dump.Restore(ctx, o); err != nil {
		t.Fatalf("restore with NoTablespaces: %v", err)
	}
	if got := other.QueryString(t, target, `SELECT count(*)::text || ' ' || coalesce((SELECT tablespace FROM pg_tables WHERE tablename = 'a'), 'default') FROM a`); got != "2 default" {
		t.Errorf("restored table a: %s, want 2 rows in the default tablespace", got)
	}
	// With the globals too, the tablespace is not created either.
	o.Target, o.WithGlobals = conn(t, other.URL(other.CreateDB(t))), true
	res, err := dump.Restore(ctx, o)
	if err != nil {
		t.Fatalf("restore with NoTablespaces and WithGlobals: %v", err)
	}
	for _, n := range res.GlobalsNotes {
		if strings.Contains(strings.ToLower(n), "tablespace") {
			t.Errorf("globals with NoTablespaces still touched the tablespace: %s", n)
		}
	}
}

// TestVerifyRestoreToNeedsPolicyRoles: a row-level security policy is part
// of the schema, not an ACL, so --no-acl keeps it, and the roles it names
// must exist where it is restored (the README says so). The error says
// which role and why.
func TestVerifyRestoreToNeedsPolicyRoles(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.Exec(t, "postgres", `DO $$ BEGIN CREATE ROLE policy_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	pg.Exec(t, src, `CREATE TABLE a (x int); INSERT INTO a VALUES (1); ALTER TABLE a ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON a FOR SELECT TO policy_reader USING (true)`)
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCluster(t)
	scratch := conn(t, other.URL(other.CreateDB(t)))
	_, err = dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch})
	if err == nil || !strings.Contains(err.Error(), `role "policy_reader" does not exist`) || !strings.Contains(err.Error(), "row-level security policy") {
		t.Fatalf("verify --restore-to without a policy's role: %v; want the role and why it is needed", err)
	}
	other.Exec(t, "postgres", `CREATE ROLE policy_reader`)
	scratch = conn(t, other.URL(other.CreateDB(t)))
	if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch}); err != nil {
		t.Fatalf("verify --restore-to with the policy's role there: %v", err)
	}
}

// TestWithoutTablespaces: restore --with-globals --no-tablespaces leaves out
// pg_dumpall's tablespace statements (their directories do not exist on
// the target), and nothing else.
func TestWithoutTablespaces(t *testing.T) {
	in := "SET default_transaction_read_only = off;\n" +
		"CREATE ROLE app;\n" +
		"ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n" +
		"CREATE TABLESPACE fast OWNER postgres LOCATION '/mnt/nvme/pg';\n" +
		"ALTER TABLESPACE fast SET (random_page_cost='1.1');\n" +
		"GRANT ALL ON TABLESPACE fast TO app;\n" +
		"REVOKE ALL ON TABLESPACE fast FROM PUBLIC;\n" +
		"GRANT reporting TO app;\n" +
		"COMMENT ON TABLESPACE fast IS 'nvme';\n"
	want := "SET default_transaction_read_only = off;\n" +
		"CREATE ROLE app;\n" +
		"ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n" +
		"GRANT reporting TO app;\n" +
		"COMMENT ON TABLESPACE fast IS 'nvme';\n"
	if got := string(dump.WithoutTablespaces([]byte(in))); got != want {
		t.Errorf("WithoutTablespaces:\n%s\nwant:\n%s", got, want)
	}
}

// TestRestoreRefusesPlantedGlobals: restore --with-globals feeds the
// globals to psql, which runs its meta-commands: one planted in storage
// (with a manifest to match) ran a shell command on the restoring host.
func TestRestoreRefusesPlantedGlobals(t *testing.T) {
	pg, st, m := richBackup(t)
	ctx := context.Background()
	stored, err := os.ReadFile(st.Location(m.GlobalsKey))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	sql, err := dec.DecodeAll(stored, nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "owned")
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	planted := enc.EncodeAll(append(sql, []byte("\\! touch "+marker+"\n")...), nil)
	enc.Close()
	if err := os.WriteFile(st.Location(m.GlobalsKey), planted, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(planted)
	m.GlobalsSHA256 = hex.EncodeToString(sum[:])
	if err := (storage.Catalog{Store: st}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	target := pg.CreateDB(t)
	_, err = dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, WithGlobals: true})
	if err == nil || !strings.Contains(err.Error(), "psql meta-command") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("restore --with-globals of planted globals: %v, want a refusal before anything changed", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the planted shell command ran: %v", err)
	}
}
