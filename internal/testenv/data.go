package testenv

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// SeedRich fills db with what a real application database has: several
// schemas, a sequence-backed key, unicode text, jsonb, numerics, timestamps,
// a view, a function, a large object, and rows rows in the biggest table.
func (p *Postgres) SeedRich(t testing.TB, db string, rows int) {
	t.Helper()
	p.Exec(t, db, fmt.Sprintf(`
CREATE SCHEMA app;
CREATE SCHEMA billing;
CREATE TABLE app.users (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  profile jsonb NOT NULL,
  balance numeric(12,2) NOT NULL,
  created_at timestamptz NOT NULL
);
INSERT INTO app.users (email, name, profile, balance, created_at)
SELECT 'user' || g || '@example.com',
       (ARRAY['Zoë','Jürgen','李雷','Ὀδυσσεύς','Ана','😀 emoji'])[1 + g %% 6] || ' ' || md5(g::text),
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', md5(g::text)), 'ok', g %% 2 = 0),
       (g::bigint * 7919 %% 100000) / 100.0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 seconds'
FROM generate_series(1, %d) g;
CREATE TABLE billing.invoices (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint REFERENCES app.users(id),
  amount numeric NOT NULL,
  memo text
);
INSERT INTO billing.invoices (user_id, amount, memo)
SELECT 1 + g %% 1000, g / 3.0, CASE WHEN g %% 5 = 0 THEN NULL ELSE 'inv ' || g END FROM generate_series(1, 5000) g;
CREATE SEQUENCE billing.counter START 42;
SELECT nextval('billing.counter');
CREATE VIEW billing.totals AS SELECT user_id, sum(amount) AS total FROM billing.invoices GROUP BY user_id;
CREATE FUNCTION app.greet(n text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || n $$;
CREATE TABLE app.docs (id int PRIMARY KEY, blob oid);
INSERT INTO app.docs VALUES (1, lo_from_bytea(0, convert_to(repeat('large object ✓ ', 1000), 'UTF8')));
`, rows))
}

// TableChecksums returns, for every user table in db, its row count and an
// md5 of its rows in a stable order, plus the contents of every large
// object, keyed by schema.table.
func (p *Postgres) TableChecksums(t testing.TB, db string) map[string]string {
	t.Helper()
	ctx, c, done := p.connect(t, db)
	defer done()
	rows, err := c.Query(ctx, `SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, tbl := range tables {
		var n int64
		var sum *string
		q := fmt.Sprintf(`SELECT count(*), md5(string_agg(x::text, E'\n' ORDER BY x::text)) FROM %s x`, tbl)
		if err := c.QueryRow(ctx, q).Scan(&n, &sum); err != nil {
			t.Fatalf("testenv: checksum %s: %v", tbl, err)
		}
		s := ""
		if sum != nil {
			s = *sum
		}
		sums[tbl] = fmt.Sprintf("%d rows %s", n, s)
	}
	var lo *string
	if err := c.QueryRow(ctx, `SELECT md5(string_agg(md5(lo_get(oid)), ',' ORDER BY md5(lo_get(oid)))) FROM pg_largeobject_metadata`).Scan(&lo); err != nil {
		t.Fatalf("testenv: large objects: %v", err)
	}
	if lo != nil {
		sums["(large objects)"] = *lo
	}
	return sums
}

// DiffChecksums describes how two TableChecksums differ, "" when equal.
func DiffChecksums(want, got map[string]string) string {
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, k+": missing")
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: want %s, got %s", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, k+": unexpected")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}
