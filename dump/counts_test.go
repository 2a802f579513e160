package dump_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// seedCountEdges adds tables whose row counts are easy to get wrong: empty,
// no columns, values with newlines and backslashes, a value that is `\.`,
// and a partitioned table.
func seedCountEdges(t *testing.T, pg *testenv.Postgres, db string) {
	t.Helper()
	pg.Exec(t, db, `
CREATE TABLE public.empty (a int);
CREATE TABLE public.nocols ();
INSERT INTO public.nocols SELECT FROM generate_series(1, 7);
CREATE TABLE public.tricky (s text);
INSERT INTO public.tricky VALUES (E'line1\nline2'), (E'\\.'), ('\.'), (E'\r\n'), (''), (NULL), (E'end\\');
CREATE TABLE public.parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE public.parted_a PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.parted_b PARTITION OF public.parted FOR VALUES FROM (100) TO (200);
INSERT INTO public.parted SELECT g, 'v' || g FROM generate_series(0, 149) g;
CREATE TABLE "Odd Schema"."Odd ""Table""" (x int);
`)
}

func TestCaptureRecordsExactCountsAndGlobals(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `CREATE SCHEMA "Odd Schema"`)
	pg.SeedRich(t, db, 3000)
	seedCountEdges(t, pg, db)
	pg.Exec(t, db, `INSERT INTO "Odd Schema"."Odd ""Table""" SELECT generate_series(1, 11)`)
	st := fileStore(t)
	m, err := dump.Capture(context.Background(), options(t, pg, db, st))
	if err != nil {
		t.Fatal(err)
	}
	if m.TableCountMethod != dump.CountMethodArchive {
		t.Fatalf("count method %q, want %q (warnings %v)", m.TableCountMethod, dump.CountMethodArchive, m.Warnings)
	}
	want := map[string]int64{
		"app.users": 3000, "billing.invoices": 5000, "app.docs": 1,
		"public.empty": 0, "public.nocols": 7, "public.tricky": 7,
		"public.parted_a": 100, "public.parted_b": 50, `Odd Schema.Odd "Table"`: 11,
	}
	got := map[string]int64{}
	for _, tc := range m.Tables {
		got[tc.Schema+"."+tc.Table] = tc.Rows
	}
	for k, n := range want {
		if g, ok := got[k]; !ok || g != n {
			t.Errorf("%s: recorded %d (present %v), want %d", k, g, ok, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("recorded tables %v, want %v", got, want)
	}

	// The manifest on storage carries the same, and the globals.
	stored, err := storage.Catalog{Store: st}.Manifest(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Tables) != len(m.Tables) || stored.GlobalsKey != storage.GlobalsKey(m.ID) || stored.GlobalsSHA256 == "" {
		t.Fatalf("stored manifest: tables %d, globals %q %q", len(stored.Tables), stored.GlobalsKey, stored.GlobalsSHA256)
	}
	if len(stored.Warnings) != 0 {
		t.Errorf("warnings for a superuser capture: %v", stored.Warnings)
	}
	sql, err := dump.ReadGlobals(context.Background(), st, stored, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sql, []byte("CREATE ROLE postgres;")) || !bytes.Contains(sql, []byte("PASSWORD 'SCRAM-SHA-256$")) {
		t.Fatalf("globals lack the superuser and its password:\n%s", sql)
	}
}

func TestCaptureGlobalsWithoutPasswordRights(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `
DO $$ BEGIN
  IF to_regrole('reader_nopw') IS NULL THEN CREATE ROLE reader_nopw LOGIN PASSWORD 'reader-pw-9'; END IF;
END $$;
CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 5);
ALTER TABLE t OWNER TO reader_nopw;`)
	st := fileStore(t)
	o := options(t, pg, db, st)
	conn, err := dump.ParseConn(pg.URLAs("reader_nopw", "reader-pw-9", db))
	if err != nil {
		t.Fatal(err)
	}
	o.Conn = conn
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "without role passwords") {
		t.Fatalf("warnings %q, want one about role passwords", m.Warnings)
	}
	sql, err := dump.ReadGlobals(context.Background(), st, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sql, []byte("CREATE ROLE reader_nopw;")) || bytes.Contains(sql, []byte("PASSWORD")) {
		t.Fatalf("want roles without passwords:\n%s", sql)
	}
	// A restore --with-globals says so where the operator looks.
	target := pg.CreateDB(t)
	su, err := dump.ParseConn(pg.URL(target))
	if err != nil {
		t.Fatal(err)
	}
	res, err := dump.Restore(context.Background(), dump.RestoreOptions{Store: st, Manifest: m, Target: su, PgBinDir: pg.BinDir, WithGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res.GlobalsNotes, func(n string) bool { return strings.Contains(n, "roles were stored without passwords") }) {
		t.Errorf("restore --with-globals notes %q, want one saying the roles have no passwords", res.GlobalsNotes)
	}
}

func TestCaptureWithoutGlobals(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `CREATE TABLE t (a int)`)
	st := fileStore(t)
	o := options(t, pg, db, st)
	o.SkipGlobals = true
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if m.GlobalsKey != "" {
		t.Fatalf("globals stored with SkipGlobals: %s", m.GlobalsKey)
	}
	objs, _ := st.List(context.Background(), "")
	if len(objs) != 2 {
		t.Fatalf("objects %v, want data and manifest", objs)
	}
	if _, err := dump.ReadGlobals(context.Background(), st, m, nil); !errors.Is(err, dump.ErrNoGlobals) {
		t.Fatalf("ReadGlobals: %v, want ErrNoGlobals", err)
	}
}

func TestScanArchiveRejects(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 1000)
	plain := runDump(t, pg, db, "--compress=0")
	sum, err := dump.ScanArchive(bytes.NewReader(plain))
	if err != nil || !sum.Complete || len(sum.Tables) != 3 {
		t.Fatalf("uncompressed archive: %+v, %v", sum, err)
	}
	if _, err := dump.ScanArchive(bytes.NewReader(runDump(t, pg, db))); !errors.Is(err, dump.ErrArchiveCompressed) {
		t.Fatalf("pg_dump-compressed archive: %v, want ErrArchiveCompressed", err)
	}
	if _, err := dump.ScanArchive(strings.NewReader("-- plain SQL\n")); err == nil {
		t.Fatal("plain SQL accepted")
	}
	// Every truncation is an error, never a panic or a hang, except at a
	// block boundary, which is a clean end but leaves tables missing.
	for _, n := range []int{0, 3, 5, 11, 12, 40, len(plain) / 3, len(plain) / 2, len(plain) - 1} {
		sum, err := dump.ScanArchive(bytes.NewReader(plain[:n]))
		if err == nil && sum.Complete {
			t.Errorf("truncated at %d of %d: complete", n, len(plain))
		}
	}
}

func runDump(t *testing.T, pg *testenv.Postgres, db string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(pg.Tool("pg_dump"), append([]string{"--format=custom", "--dbname=" + pg.URL(db)}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

// synthArchive builds a minimal custom-format archive of the given version
// with one table's data, as pg_backup_archiver.c would write it.
func synthArchive(minor byte, rows []string) []byte {
	var b bytes.Buffer
	wInt := func(v int) {
		if v < 0 {
			b.WriteByte(1)
			v = -v
		} else {
			b.WriteByte(0)
		}
		binary.Write(&b, binary.LittleEndian, uint32(v))
	}
	wStr := func(s *string) {
		if s == nil {
			wInt(-1)
			return
		}
		wInt(len(*s))
		b.WriteString(*s)
	}
	str := func(s string) *string { return &s }
	b.WriteString("PGDMP")
	b.Write([]byte{1, minor, 0, 4, 8, 1})
	if minor >= 15 {
		b.WriteByte(0)
	} else {
		wInt(0)
	}
	for range 7 {
		wInt(1)
	}
	wStr(str("db"))
	wStr(str("16.0"))
	wStr(str("16.0"))
	wInt(2) // TOC entries
	entry := func(id int, tag, desc string) {
		wInt(id)
		wInt(1)
		wStr(str("0"))
		wStr(str("0"))
		wStr(str(tag))
		wStr(str(desc))
		wInt(3)
		wStr(str("CREATE ..."))
		wStr(str(""))
		wStr(nil)
		wStr(str("s"))
		wStr(str(""))
		if minor >= 14 {
			wStr(str("heap"))
		}
		if minor >= 16 {
			wInt('r')
		}
		wStr(str("owner"))
		wStr(str("false"))
		wStr(str("1"))
		wStr(nil)
		b.WriteByte(1)
		b.Write(make([]byte, 8))
	}
	entry(1, "t", "TABLE")
	entry(2, "t", "TABLE DATA")
	b.WriteByte(1) // BLK_DATA
	wInt(2)
	for _, r := range rows {
		wInt(len(r))
		b.WriteString(r)
	}
	wInt(0)
	b.WriteByte(3) // BLK_BLOBS
	wInt(9)
	wInt(16400)
	wInt(3)
	b.WriteString("abc")
	wInt(0)
	wInt(0)
	return b.Bytes()
}

func TestScanArchiveVersions(t *testing.T) {
	rows := []string{"1\tone\n2\tt", "wo\n", "3\t\\.\n", "\\.\n\n\n"}
	for _, minor := range []byte{12, 13, 14, 15, 16} {
		sum, err := dump.ScanArchive(bytes.NewReader(synthArchive(minor, rows)))
		if err != nil {
			t.Fatalf("1.%d: %v", minor, err)
		}
		if !sum.Complete || sum.Entries != 2 || len(sum.Tables) != 1 || sum.Tables[0] != (storage.TableCount{Schema: "s", Table: "t", Rows: 3}) {
			t.Fatalf("1.%d: %+v", minor, sum)
		}
	}
	if _, err := dump.ScanArchive(bytes.NewReader(synthArchive(17, rows))); err == nil || !strings.Contains(err.Error(), "1.17") {
		t.Fatalf("unknown version 1.17: %v", err)
	}
}

func FuzzScanArchive(f *testing.F) {
	f.Add(synthArchive(14, []string{"1\n", "\\.\n"}))
	f.Add(synthArchive(16, []string{"a\tb\nc", "\n"}))
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sum, err := dump.ScanArchive(bytes.NewReader(b))
		if err == nil && sum.Entries < len(sum.Tables) {
			t.Fatalf("more tables than entries: %+v", sum)
		}
	})
}

func TestCompareCounts(t *testing.T) {
	m := storage.Manifest{TableCountMethod: dump.CountMethodArchive, Tables: []storage.TableCount{
		{Schema: "a", Table: "x", Rows: 10}, {Schema: "a", Table: "y", Rows: 0}, {Schema: "a", Table: "gone", Rows: 1},
	}}
	got := map[[2]string]int64{{"a", "x"}: 10, {"a", "y"}: 1}
	cs := dump.CompareCounts(m, got)
	if !cs[0].OK || cs[1].OK || cs[2].OK || cs[2].Got != -1 {
		t.Fatalf("exact: %+v", cs)
	}
	m.TableCountMethod = dump.CountMethodEstimate
	m.Tables = []storage.TableCount{{Schema: "a", Table: "x", Rows: 100000}}
	for n, ok := range map[int64]bool{100000: true, 85000: true, 50000: false, 121000: false} {
		if c := dump.CompareCounts(m, map[[2]string]int64{{"a", "x"}: n}); c[0].OK != ok {
			t.Errorf("estimate 100000 vs %d: OK %v, want %v", n, c[0].OK, ok)
		}
	}
}

// TestVerifyCountsInheritance: pg_dump copies a parent table's own rows
// (COPY parent TO stdout is SELECT ... FROM ONLY parent), and the restored
// parent's count must be of its own rows too: a plain count(*) includes
// every child's (legacy inheritance, TimescaleDB's hypertable chunks), and
// verify --restore-to called a good backup's parent a mismatch.
func TestVerifyCountsInheritance(t *testing.T) {
	ctx := context.Background()
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE parent (x int); CREATE TABLE child () INHERITS (parent);
		INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2), (3)`)
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, pg, src, st))
	if err != nil {
		t.Fatal(err)
	}
	scratch := conn(t, pg.URL(pg.CreateDB(t)))
	vr, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, RestoreTo: &scratch})
	if err != nil {
		t.Fatalf("verify --restore-to of a backup with an inheritance child: %v (counts %+v)", err, vr.Counts)
	}
	got := map[string]int64{}
	for _, c := range vr.Counts {
		got[c.Table] = c.Got
	}
	if got["parent"] != 1 || got["child"] != 2 {
		t.Errorf("restored counts %v; want parent 1 (its own rows), child 2", got)
	}
}
