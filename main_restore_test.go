package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// backend is one storage backend under test: the environment that points
// pgbackups at it, and a Store the test uses to look behind its back.
type backend struct {
	name  string
	env   []string
	store storage.Store
	s3    *testenv.S3Server
}

func backends(t *testing.T) []func(t *testing.T) backend {
	return []func(t *testing.T) backend{
		func(t *testing.T) backend {
			dir := t.TempDir()
			st, err := file.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			return backend{name: "file", env: []string{"PGBACKUPS_STORAGE_URL=file://" + dir}, store: st}
		},
		func(t *testing.T) backend {
			srv := testenv.S3(t)
			st, err := s3.New(context.Background(), s3.Options{
				Bucket: srv.Bucket, Prefix: srv.Prefix, Region: srv.Region, Endpoint: srv.Endpoint,
				AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
			})
			if err != nil {
				t.Fatal(err)
			}
			return backend{name: "s3", env: srv.Env(), store: st, s3: &srv}
		},
	}
}

// runIn is run with a working directory.
func runIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// spyTools is a bin directory whose PostgreSQL client programs append their
// argv to argv.log and then run the real ones.
func spyTools(t *testing.T, pg *testenv.Postgres) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"pg_dump", "pg_dumpall", "pg_restore", "psql"} {
		script := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >> %s/argv.log\nexec %s \"$@\"\n", tool, dir, pg.Tool(tool))
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// seedRoundTrip builds a database with what a restore must carry over:
// several schemas, sequences, views, a materialized view, functions, large
// objects, contrib extensions, and a non-superuser role owning objects,
// with grants to another role.
func seedRoundTrip(t *testing.T, pg *testenv.Postgres, db string) {
	t.Helper()
	pg.Exec(t, "postgres", `DO $$ BEGIN
  IF to_regrole('rt_owner') IS NULL THEN CREATE ROLE rt_owner LOGIN PASSWORD 'rt-owner-pw-7'; END IF;
  IF to_regrole('rt_reader') IS NULL THEN CREATE ROLE rt_reader NOLOGIN; END IF;
END $$`)
	pg.SeedRich(t, db, 2000)
	pg.Exec(t, db, `
CREATE EXTENSION pg_trgm;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE SCHEMA inventory AUTHORIZATION rt_owner;
GRANT CREATE ON DATABASE `+db+` TO rt_owner;
SET ROLE rt_owner;
CREATE TABLE inventory.items (id serial PRIMARY KEY, sku citext UNIQUE NOT NULL, attrs hstore, name text NOT NULL);
INSERT INTO inventory.items (sku, attrs, name)
  SELECT 'SKU-' || g, hstore(ARRAY['color', 'size'], ARRAY[(ARRAY['red','green','blue'])[1 + g % 3], (g % 40)::text]), 'item ' || md5(g::text)
  FROM generate_series(1, 1500) g;
CREATE INDEX items_name_trgm ON inventory.items USING gin (name gin_trgm_ops);
CREATE VIEW inventory.red AS SELECT id, sku FROM inventory.items WHERE attrs -> 'color' = 'red';
CREATE MATERIALIZED VIEW inventory.summary AS SELECT attrs -> 'color' AS color, count(*) AS n FROM inventory.items GROUP BY 1;
CREATE FUNCTION inventory.similar_items(q text) RETURNS SETOF inventory.items LANGUAGE sql STABLE AS $$ SELECT * FROM inventory.items WHERE name % q $$;
CREATE SEQUENCE inventory.batch START 1000 INCREMENT 7;
SELECT nextval('inventory.batch'), nextval('inventory.batch');
SELECT lo_from_bytea(0, convert_to('owned by rt_owner', 'UTF8'));
RESET ROLE;
GRANT USAGE ON SCHEMA inventory TO rt_reader;
GRANT SELECT ON inventory.items, inventory.red TO rt_reader;
COMMENT ON TABLE inventory.items IS 'stock, with ünïcode';
`)
}

// schemaOf is pg_dump --schema-only of db without comments, blank lines
// and the per-run \restrict keys.
func schemaOf(t *testing.T, pg *testenv.Postgres, db string) string {
	t.Helper()
	out, err := exec.Command(pg.Tool("pg_dump"), "--schema-only", "--dbname="+pg.URL(db)).Output()
	if err != nil {
		t.Fatalf("pg_dump --schema-only %s: %v", db, err)
	}
	var kept []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "--") || strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}

// extraState is what TableChecksums does not cover: sequences and a
// materialized view's contents.
func extraState(t *testing.T, pg *testenv.Postgres, db string) string {
	t.Helper()
	return pg.QueryString(t, db, `SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename)
		|| ' | ' || (SELECT string_agg(color || ':' || n, ',' ORDER BY color) FROM inventory.summary) FROM pg_sequences`)
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var d []string
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			d = append(d, fmt.Sprintf("line %d:\n  source: %s\n  target: %s", i+1, x, y))
			if len(d) > 10 {
				break
			}
		}
	}
	return strings.Join(d, "\n")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRestoreRoundTripIntoFreshCluster(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	seedRoundTrip(t, pg, src)
	wantSchema := schemaOf(t, pg, src)
	wantData := pg.TableChecksums(t, src)
	wantExtra := extraState(t, pg, src)
	// One fresh cluster for both backends: the first restore creates the
	// roles, the second finds them there and must tolerate that.
	fresh := testenv.NewCluster(t)

	for i, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			spy := spyTools(t, pg)
			env := append([]string{"PGBACKUPS_DATABASE_URL=" + pg.URL(src), "PGBACKUPS_PG_BIN_DIR=" + spy}, b.env...)
			var outputs []string
			do := func(dir string, args ...string) result {
				t.Helper()
				r := runIn(t, dir, env, args...)
				outputs = append(outputs, r.stdout, r.stderr)
				return r
			}
			must := func(r result, what string) result {
				t.Helper()
				if r.code != 0 {
					t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
				}
				return r
			}

			id := lastLine(must(do("", "capture"), "capture").stdout)

			// restore --with-globals into a brand-new cluster.
			target := fresh.CreateDB(t)
			r := must(do("", "restore", id, "--to", fresh.URL(target), "--confirm", target, "--with-globals"), "restore")
			if !strings.Contains(r.stderr, "restored 4 tables") || !strings.Contains(r.stderr, "not restored: the database's own owner") {
				t.Errorf("restore report: %s", r.stderr)
			}
			if i == 1 && !strings.Contains(r.stderr, "role rt_owner already exists") {
				t.Errorf("second restore into the cluster should keep the existing roles:\n%s", r.stderr)
			}
			if d := diffLines(wantSchema, schemaOf(t, fresh, target)); d != "" {
				t.Fatalf("schema differs after restore:\n%s", d)
			}
			if d := testenv.DiffChecksums(wantData, fresh.TableChecksums(t, target)); d != "" {
				t.Fatalf("data differs after restore:\n%s", d)
			}
			if got := extraState(t, fresh, target); got != wantExtra {
				t.Fatalf("sequences or materialized view differ:\n source %s\n target %s", wantExtra, got)
			}
			// The role came with its password.
			c, err := pgx.Connect(context.Background(), fresh.URLAs("rt_owner", "rt-owner-pw-7", target))
			if err != nil {
				t.Fatalf("rt_owner cannot log in to the new cluster: %v", err)
			}
			c.Close(context.Background())

			// info, text and JSON.
			r = must(do("", "info", id), "info")
			for _, want := range []string{"Status:", "completed", "inventory.items", "1500", "exact, counted in the archive", "SHA-256 (globals)"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("info lacks %q:\n%s", want, r.stdout)
				}
			}
			var info struct {
				storage.Manifest
				DataLocation    string `json:"data_location"`
				GlobalsLocation string `json:"globals_location"`
			}
			if err := json.Unmarshal([]byte(must(do("", "info", "latest", "--json"), "info --json").stdout), &info); err != nil {
				t.Fatal(err)
			}
			if info.ID != id || info.TableCountMethod != "archive" || len(info.Tables) != 4 || info.GlobalsKey == "" ||
				!strings.HasSuffix(info.DataLocation, storage.DataKey(id)) || !strings.HasSuffix(info.GlobalsLocation, storage.GlobalsKey(id)) {
				t.Fatalf("info --json: %+v", info)
			}
			if r := must(do("", "list"), "list"); !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "CREATED (UTC)") {
				t.Errorf("list:\n%s", r.stdout)
			}

			// download: default name in the working directory, then stdout.
			dir := t.TempDir()
			r = must(do(dir, "download", id), "download")
			archive, err := os.ReadFile(filepath.Join(dir, id+".dump"))
			if err != nil || sha256Hex(archive) != info.DumpSHA256 {
				t.Fatalf("downloaded archive: %v, sha256 %s, want %s", err, sha256Hex(archive), info.DumpSHA256)
			}
			// The hint's command, as printed, restores it with its owners
			// into a new database of the cluster whose roles it has.
			hint := "pg_restore --exit-on-error --dbname=\"$TARGET_DATABASE_URL\" '" + id + ".dump'"
			if !strings.Contains(r.stderr, hint) {
				t.Fatalf("download hint lacks %q:\n%s", hint, r.stderr)
			}
			byHint := pg.CreateDB(t)
			if out, err := exec.Command(pg.Tool("pg_restore"), "--exit-on-error", "--dbname="+pg.URL(byHint), filepath.Join(dir, id+".dump")).CombinedOutput(); err != nil {
				t.Fatalf("the download hint's pg_restore: %v\n%s", err, out)
			}
			if d := testenv.DiffChecksums(wantData, pg.TableChecksums(t, byHint)); d != "" {
				t.Errorf("restored by the download hint:\n%s", d)
			}
			if out, err := exec.Command(pg.Tool("pg_restore"), "--list", filepath.Join(dir, id+".dump")).CombinedOutput(); err != nil {
				t.Fatalf("stock pg_restore cannot read the download: %v\n%s", err, out)
			}
			if r := must(do("", "download", "latest", "-o", "-"), "download -o -"); sha256Hex([]byte(r.stdout)) != info.DumpSHA256 {
				t.Fatal("download -o - wrote other bytes than the archive")
			}

			// url: S3 signs one that works without credentials; the file
			// backend says it cannot.
			r = do("", "url", id, "--expires", "10m")
			if b.s3 == nil {
				if r.code != exitFailure || !strings.Contains(r.stderr, "cannot sign URLs") || !strings.Contains(r.stderr, "pgbackups download "+id) {
					t.Fatalf("url on the file backend: exit %d\n%s", r.code, r.stderr)
				}
			} else {
				must(r, "url")
				if !strings.Contains(r.stderr, "| zstd -d | pg_restore") {
					t.Errorf("url hint: %s", r.stderr)
				}
				resp, err := http.Get(strings.TrimSpace(r.stdout))
				if err != nil {
					t.Fatal(err)
				}
				dec, _ := zstd.NewReader(resp.Body)
				got, err := io.ReadAll(dec)
				resp.Body.Close()
				if resp.StatusCode != 200 || err != nil || sha256Hex(got) != info.DumpSHA256 {
					t.Fatalf("GET pre-signed URL: %s, %v", resp.Status, err)
				}
			}

			// verify, reading the archive, then restoring into a scratch db.
			if r := must(do("", "verify", id), "verify"); !strings.Contains(r.stdout, "is good") || !strings.Contains(r.stdout, "row counts of 4 tables match") {
				t.Errorf("verify:\n%s", r.stdout)
			}
			scratch := pg.CreateDB(t)
			if r := must(do("", "verify", id, "--restore-to", pg.URL(scratch)), "verify --restore-to"); !strings.Contains(r.stdout, "row counts of 4 tables match") {
				t.Errorf("verify --restore-to:\n%s", r.stdout)
			}

			// A parallel restore says it uses a temporary file.
			par := pg.CreateDB(t)
			r = must(do("", "restore", "latest", "--to", pg.URL(par), "--confirm", par, "--jobs", "3"), "restore --jobs")
			if !strings.Contains(r.stderr, "temporary file") {
				t.Errorf("restore --jobs does not mention its temporary file:\n%s", r.stderr)
			}
			if d := testenv.DiffChecksums(wantData, pg.TableChecksums(t, par)); d != "" {
				t.Fatalf("parallel restore differs:\n%s", d)
			}

			// No secret anywhere: outputs, child argv.
			argv, _ := os.ReadFile(filepath.Join(spy, "argv.log"))
			for _, tool := range []string{"pg_dump ", "pg_dumpall ", "pg_restore ", "psql "} {
				if !strings.Contains(string(argv), tool) {
					t.Errorf("%s never ran", tool)
				}
			}
			outputs = append(outputs, string(argv))
			for _, s := range outputs {
				for _, secret := range []string{pg.Password, "rt-owner-pw-7", secretOf(b)} {
					if secret != "" && strings.Contains(s, secret) {
						t.Fatalf("a secret (%.4s...) appears in output or argv:\n%s", secret, s)
					}
				}
			}

			// delete, and the backup is gone.
			must(do("", "delete", id, "--confirm", id), "delete")
			if objs, _ := b.store.List(context.Background(), id+"/"); len(objs) != 0 {
				t.Fatalf("objects left after delete: %v", objs)
			}
			if r := do("", "info", id); r.code != exitFailure || !strings.Contains(r.stderr, "no such backup") {
				t.Fatalf("info after delete: exit %d %s", r.code, r.stderr)
			}
		})
	}
}

func secretOf(b backend) string {
	if b.s3 != nil {
		return b.s3.SecretKey
	}
	return ""
}

// snapshot is every object's key and content hash.
func snapshot(t *testing.T, st storage.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, o := range objs {
		rc, err := st.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, rc)
		rc.Close()
		out[o.Key] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

func sameSnapshot(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+" (new)")
		}
	}
	sort.Strings(d)
	return strings.Join(d, ", ")
}

func TestRestoreCommandsRejectBadInput(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 1000)
	for _, mk := range backends(t) {
		b := mk(t)
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			env := append([]string{"PGBACKUPS_DATABASE_URL=" + pg.URL(src), "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir}, b.env...)
			r := runIn(t, "", env, "capture")
			if r.code != 0 {
				t.Fatalf("capture: %s", r.stderr)
			}
			id := lastLine(r.stdout)
			man, err := storage.Catalog{Store: b.store}.Manifest(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			target := pg.CreateDB(t)
			unknown := "20200101-000000-abcd"

			// A failed backup: info explains it, nothing restores it.
			failedID := storage.NewID(time.Now().Add(-time.Hour))
			failed := storage.Manifest{ID: failedID, Status: storage.StatusFailed, Database: src, StartedAt: time.Now().Add(-time.Hour),
				FinishedAt: time.Now().Add(-time.Hour), Error: "pg_dump: exit status 1: lock timeout"}
			if err := (storage.Catalog{Store: b.store}).WriteManifest(ctx, failed); err != nil {
				t.Fatal(err)
			}
			if r := runIn(t, "", env, "info", failedID); r.code != 0 || !strings.Contains(r.stdout, "failed") || !strings.Contains(r.stdout, "lock timeout") {
				t.Errorf("info of a failed backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}

			// check runs a command that must fail with code and a message
			// containing want, leave storage as it was, and say it once.
			check := func(code int, want string, dir string, args ...string) {
				t.Helper()
				before := snapshot(t, b.store)
				r := runIn(t, dir, env, args...)
				if r.code != code || !strings.Contains(r.stderr, want) {
					t.Errorf("%v: exit %d, want %d with %q\nstderr: %s", args, r.code, code, want, r.stderr)
				}
				n := 0
				for _, line := range strings.Split(r.stderr, "\n") {
					if strings.HasPrefix(line, "pgbackups") || strings.Contains(line, `"level":"ERROR"`) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%v: want one message, got:\n%s", args, r.stderr)
				}
				if d := sameSnapshot(before, snapshot(t, b.store)); d != "" {
					t.Errorf("%v changed storage: %s", args, d)
				}
				for _, s := range []string{r.stdout, r.stderr} {
					if strings.Contains(s, pg.Password) || strings.Contains(s, "hunter2") {
						t.Errorf("%v: a password appears in the output:\n%s", args, s)
					}
				}
			}

			check(exitFailure, "no such backup", "", "info", unknown)
			check(exitFailure, "no such backup", "", "download", unknown, "-o", t.TempDir()+"/x.dump")
			check(exitFailure, "no such backup", "", "restore", unknown, "--to", pg.URL(target), "--confirm", target)
			check(exitFailure, "no such backup", "", "verify", unknown)
			check(exitUsage, "not a backup id", "", "info", "yesterday") // a usage error, as delete's
			check(exitUsage, "--confirm "+target, "", "restore", id, "--to", pg.URL(target))
			check(exitUsage, "does not match the target database", "", "restore", id, "--to", pg.URL(target), "--confirm", src)
			check(exitUsage, "--to DATABASE_URL is required", "", "restore", id, "--confirm", target)
			check(exitUsage, "does not match the target database", "", "restore", id, "--to", "postgres://app:hunter2@127.0.0.1:1/gone", "--confirm", "other")
			check(exitFailure, `"gone" on 127.0.0.1:1`, "", "restore", id, "--to", "postgres://app:hunter2@127.0.0.1:1/gone?connect_timeout=3", "--confirm", "gone")
			check(exitUsage, "the database pgbackups backs up", "", "verify", id, "--restore-to", pg.URL(src))
			check(exitUsage, "repeat its id with --confirm", "", "delete", id, "--confirm", unknown)
			check(exitUsage, "never latest", "", "delete", "latest", "--confirm", "latest")
			check(exitFailure, "no such backup", "", "delete", unknown, "--confirm", unknown)
			check(exitUsage, "outside 1s to 168h", "", "url", id, "--expires", "720h")
			check(exitFailure, "did not complete", "", "restore", failedID, "--to", pg.URL(target), "--confirm", target)
			check(exitFailure, "did not complete", "", "download", failedID, "-o", t.TempDir()+"/f.dump")
			check(exitFailure, "did not complete", "", "verify", failedID)

			// Damage the stored object: flipped byte, then truncated.
			orig := readObject(t, b.store, man.DataKey)
			flipped := bytes.Clone(orig)
			flipped[len(flipped)/2] ^= 0x01
			for name, data := range map[string][]byte{"flipped byte": flipped, "truncated": orig[:len(orig)/2]} {
				writeObject(t, b.store, man.DataKey, data)
				dir := t.TempDir()
				check(exitFailure, "does not match its manifest", dir, "download", id)
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("%s: download left %v behind", name, left)
				}
				check(exitFailure, "does not match its manifest", "", "verify", id)
				damaged := pg.CreateDB(t)
				check(exitFailure, "does not match its manifest", "", "restore", id, "--to", pg.URL(damaged), "--confirm", damaged)
			}
			writeObject(t, b.store, man.DataKey, orig)
			if r := runIn(t, "", env, "verify", id); r.code != 0 {
				t.Fatalf("verify after repair: %s", r.stderr)
			}

			// Without its manifest the backup does not exist.
			manifest := readObject(t, b.store, storage.ManifestKey(id))
			if err := b.store.Delete(ctx, storage.ManifestKey(id)); err != nil {
				t.Fatal(err)
			}
			check(exitFailure, "no such backup", "", "info", id)
			check(exitFailure, "no such backup", "", "restore", id, "--to", pg.URL(target), "--confirm", target)
			check(exitFailure, "no completed backup", "", "download", "latest")
			if ms := listJSON(t, env); len(ms) != 0 {
				t.Fatalf("listed without a manifest: %+v", ms)
			}
			writeObject(t, b.store, storage.ManifestKey(id), manifest)
		})
	}
}

func readObject(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeObject(t *testing.T, st storage.Store, key string, b []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func TestPruneCommand(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE t (a int); INSERT INTO t VALUES (1)`)
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PGBACKUPS_DATABASE_URL=" + pg.URL(src), "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir, "PGBACKUPS_STORAGE_URL=" + dir,
		"PGBACKUPS_KEEP_LAST=2", "PGBACKUPS_KEEP_DAILY=0", "PGBACKUPS_KEEP_WEEKLY=0", "PGBACKUPS_ORPHAN_GRACE=1h",
	}
	var ids []string
	for range 3 {
		r := run(t, env, "capture")
		if r.code != 0 {
			t.Fatalf("capture: %s", r.stderr)
		}
		ids = append(ids, lastLine(r.stdout))
	}
	// Objects without a manifest whose mtime says two hours old, but that
	// arrived just now (a copy keeps the mtime): a capture's or a copy's
	// still being written, kept. main_orphan_test.go has orphans removed.
	old := time.Now().Add(-2 * time.Hour)
	orphan := storage.NewID(old)
	writeObject(t, st, storage.DataKey(orphan), []byte("half a dump"))
	os.Chtimes(st.Location(storage.DataKey(orphan)), old, old)

	before := snapshot(t, st)
	r := run(t, env, "prune", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would remove  "+ids[0]) || strings.Contains(r.stdout, orphan) || strings.Contains(r.stdout, "remove  "+ids[1]) {
		t.Fatalf("prune --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if d := sameSnapshot(before, snapshot(t, st)); d != "" {
		t.Fatalf("dry run changed storage: %s", d)
	}
	if r := run(t, env, "prune"); r.code != 0 {
		t.Fatalf("prune: %s", r.stderr)
	}
	// Ids taken in the same second sort by their random suffix; retention
	// goes by start time: the two started last are kept.
	ms := listJSON(t, env)
	if len(ms) != 2 || !(ms[0].ID == ids[2] && ms[1].ID == ids[1] || ms[0].ID == ids[1] && ms[1].ID == ids[2]) {
		t.Fatalf("after prune: %+v, want %v", ms, ids[1:])
	}
	if objs, _ := st.List(context.Background(), orphan); len(objs) != 1 {
		t.Fatalf("objects that arrived just now: %v, want the one left", objs)
	}
}

func TestGlobalsDisabled(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE t (a int); INSERT INTO t VALUES (1)`)
	dir := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(src), "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir, "PGBACKUPS_STORAGE_URL=" + dir, "PGBACKUPS_GLOBALS=false"}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: %s", r.stderr)
	}
	id := lastLine(r.stdout)
	if _, err := os.Stat(filepath.Join(dir, storage.GlobalsKey(id))); !os.IsNotExist(err) {
		t.Fatalf("globals stored with PGBACKUPS_GLOBALS=false: %v", err)
	}
	if r := run(t, env, "info", id); !strings.Contains(r.stdout, "not stored") {
		t.Errorf("info does not say globals are missing:\n%s", r.stdout)
	}
	target := pg.CreateDB(t)
	r = run(t, env, "restore", id, "--to", pg.URL(target), "--confirm", target, "--with-globals")
	if r.code != exitFailure || !strings.Contains(r.stderr, "no globals stored") || strings.Contains(r.stderr, ": backup "+id+": ") {
		t.Fatalf("restore --with-globals without globals: exit %d, want the reason, without naming the backup twice\n%s", r.code, r.stderr)
	}
	if r := run(t, env, "restore", id, "--to", pg.URL(target), "--confirm", target); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
}

// TestRestoreNoTablespaces: restore --no-tablespaces (in its usage)
// restores a database that uses a tablespace onto a server without it, and
// verify --restore-to does so on its own; a plain restore says to add it.
func TestRestoreNoTablespaces(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL(src)+"&allow_in_place_tablespaces=on")
	if err != nil {
		t.Fatal(err)
	}
	ts := "ts_" + src
	_, err = c.Exec(ctx, "CREATE TABLESPACE "+ts+" LOCATION ''") // in the data directory: no directory to chown
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, src, `CREATE TABLE a (x int) TABLESPACE `+ts+`; INSERT INTO a VALUES (1), (2)`)
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(src), "PGBACKUPS_PG_BIN_DIR=" + pg.BinDir, "PGBACKUPS_STORAGE_URL=file://" + t.TempDir()}

	if r := runIn(t, "", env, "restore", "--help"); r.code != 0 || !strings.Contains(r.stdout, "[--no-tablespaces]") || !strings.Contains(r.stdout, "-no-tablespaces\n") {
		t.Errorf("restore --help does not list --no-tablespaces: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runIn(t, "", env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: %s", r.stderr)
	}
	id := lastLine(r.stdout)
	other := testenv.NewCluster(t) // no such tablespace there

	target := other.CreateDB(t)
	r = runIn(t, "", env, "restore", id, "--to", other.URL(target), "--confirm", target)
	if r.code != exitFailure || !strings.Contains(r.stderr, ts) || !strings.Contains(r.stderr, "add --no-tablespaces") {
		t.Errorf("restore onto a server without the tablespace: exit %d, want 1 advising --no-tablespaces\n%s", r.code, r.stderr)
	}
	target = other.CreateDB(t)
	r = runIn(t, "", env, "restore", id, "--to", other.URL(target), "--confirm", target, "--no-tablespaces")
	if r.code != 0 || !strings.Contains(r.stderr, "restored 1 tables (2 rows)") {
		t.Fatalf("restore --no-tablespaces: exit %d\n%s", r.code, r.stderr)
	}
	if got := other.QueryString(t, target, `SELECT coalesce(tablespace, 'default') FROM pg_tables WHERE tablename = 'a'`); got != "default" {
		t.Errorf("restored table a is in tablespace %s, want the default", got)
	}
	scratch := other.CreateDB(t)
	if r := runIn(t, "", env, "verify", id, "--restore-to", other.URL(scratch)); r.code != 0 || !strings.Contains(r.stdout, "row counts of 1 tables match") {
		t.Errorf("verify --restore-to on a server without the tablespace: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
