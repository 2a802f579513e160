package dump

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// sendCounter forwards TCP to upstream and counts the client's sends: the
// round trips it asks for, about one per query.
func sendCounter(t *testing.T, upstream string) (addr string, sends *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sends = new(atomic.Int64)
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			go func() {
				defer server.Close()
				defer client.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := client.Read(buf)
					if n > 0 {
						sends.Add(1)
						if _, err := server.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer client.Close()
				io.Copy(client, server)
			}()
		}
	}()
	return ln.Addr().String(), sends
}

// TestCountRowsManyTables: verify --restore-to counts every table of a
// restored database. With a schema per tenant that is tens of thousands of
// tables, and two round trips per table took 7.6s for 20,000 tables over
// loopback (minutes to a scratch server in another region). Counts are
// batched, stay exact, and leave out a table that is not there.
func TestCountRowsManyTables(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	const n = 300
	pg.Exec(t, db, fmt.Sprintf(`CREATE SCHEMA "Tenant ""Ü"" x.y";
DO $$ BEGIN FOR i IN 1..%d LOOP
  EXECUTE format('CREATE TABLE %%I.%%I (a int)', CASE WHEN i %% 2 = 0 THEN 'public' ELSE 'Tenant "Ü" x.y' END, 't' || i || repeat('ß', 20));
  EXECUTE format('INSERT INTO %%I.%%I SELECT generate_series(1, %%s)', CASE WHEN i %% 2 = 0 THEN 'public' ELSE 'Tenant "Ü" x.y' END, 't' || i || repeat('ß', 20), i %% 7);
END LOOP; END $$;`, n))
	var tables []storage.TableCount
	for i := 1; i <= n; i++ {
		schema := `Tenant "Ü" x.y`
		if i%2 == 0 {
			schema = "public"
		}
		tables = append(tables, storage.TableCount{Schema: schema, Table: fmt.Sprintf("t%d%s", i, strings.Repeat("ß", 20)), Rows: int64(i % 7)})
	}
	tables = append(tables, storage.TableCount{Schema: "public", Table: "gone", Rows: 5})

	addr, sends := sendCounter(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port))
	c, err := ParseConn(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, addr, db))
	if err != nil {
		t.Fatal(err)
	}
	got, err := countRows(context.Background(), c, tables)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("counted %d tables, want %d (the missing one left out)", len(got), n)
	}
	for _, tc := range tables[:n] {
		if g, ok := got[[2]string{tc.Schema, tc.Table}]; !ok || g != tc.Rows {
			t.Errorf("%s.%s: counted %d (found %v), want %d", tc.Schema, tc.Table, g, ok, tc.Rows)
		}
	}
	// Connecting takes a few; a table at a time took 2 per table.
	if s := sends.Load(); s > n/10 {
		t.Errorf("counting %d tables took %d round trips, want at most %d", n, s, n/10)
	}
}

// TestCountRowsBatchFallsBack: a table in a batch that this role may count
// only with FORCE ROW LEVEL SECURITY lifted, or may not read at all, makes
// the batch count a table at a time: the first is counted, the second named.
func TestCountRowsBatchFallsBack(t *testing.T) {
	pg := testenv.PG(t)
	// Created first, so dropped after the database that depends on it.
	role := fmt.Sprintf("cnt_%d", os.Getpid())
	pg.Exec(t, "postgres", fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'cnt-pw'`, role))
	t.Cleanup(func() { pg.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role) })
	db := pg.CreateDB(t)
	pg.Exec(t, db, fmt.Sprintf(`
CREATE TABLE plain (a int); INSERT INTO plain VALUES (1), (2);
CREATE TABLE forced (a int); INSERT INTO forced VALUES (1), (2), (3);
ALTER TABLE forced ENABLE ROW LEVEL SECURITY; ALTER TABLE forced FORCE ROW LEVEL SECURITY;
CREATE POLICY none ON forced USING (false);
ALTER TABLE plain OWNER TO %[1]s; ALTER TABLE forced OWNER TO %[1]s;
CREATE TABLE private (a int);`, role))
	c, err := ParseConn(pg.URLAs(role, "cnt-pw", db))
	if err != nil {
		t.Fatal(err)
	}
	tables := []storage.TableCount{{Schema: "public", Table: "plain"}, {Schema: "public", Table: "forced"}}
	got, err := countRows(context.Background(), c, tables)
	if err != nil {
		t.Fatal(err)
	}
	if got[[2]string{"public", "plain"}] != 2 || got[[2]string{"public", "forced"}] != 3 {
		t.Errorf("counts %v, want plain 2 and forced 3", got)
	}
	_, err = countRows(context.Background(), c, append(tables, storage.TableCount{Schema: "public", Table: "private"}))
	if err == nil || !strings.Contains(err.Error(), "count rows of public.private") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("count of a table the role may not read: %v, want it named", err)
	}
}

// TestScanArchiveCountsLargeObjects: large objects are no table's rows, so
// the table counts miss them however many there are; the scan counts them
// on their own, the empty one too (1200 spans two of pg_dump 17's batches
// of 1000).
func TestScanArchiveCountsLargeObjects(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, `CREATE TABLE docs (id int, body oid);
INSERT INTO docs SELECT g, lo_from_bytea(0, convert_to(repeat('x', g % 50), 'UTF8')) FROM generate_series(1, 1200) g;`)
	cmd := exec.Command(pg.Tool("pg_dump"), "--format=custom", "--compress=0", "--no-password",
		"--host="+pg.Host, fmt.Sprintf("--port=%d", pg.Port), "--username="+pg.User, db)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.Password) // not in argv
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sum, scanErr := ScanArchive(out)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if scanErr != nil || !sum.Complete {
		t.Fatalf("scan: %v (complete %v)", scanErr, sum.Complete)
	}
	if sum.LargeObjects != 1200 || len(sum.Tables) != 1 || sum.Tables[0].Rows != 1200 {
		t.Errorf("scan counted %d large objects and tables %+v, want 1200 and docs 1200", sum.LargeObjects, sum.Tables)
	}
}
