package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestInfoManyTables: a schema-per-tenant database has tens of thousands of
// tables. info summarises them (how many, how many rows, the biggest)
// instead of burying the backup's facts under a line per table; --tables
// lists them all. Names that are not plain identifiers are quoted, so a
// schema or table holding a dot, a quote or a space reads unambiguously.
func TestInfoManyTables(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir}
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id := storage.NewID(now)
	var tables []storage.TableCount
	var total int64
	for i := range 200 {
		tables = append(tables, storage.TableCount{Schema: fmt.Sprintf("tenant_%03d", i), Table: "orders", Rows: int64(i)})
		total += int64(i)
	}
	odd := storage.TableCount{Schema: `Schéma "q".x`, Table: "big table", Rows: 1_000_000}
	tables = append(tables, odd)
	total += odd.Rows
	m := storage.Manifest{ID: id, Status: storage.StatusCompleted, Database: "app",
		StartedAt: now, FinishedAt: now.Add(time.Minute), Tables: tables, TableCountMethod: "archive"}
	if err := (storage.Catalog{Store: st}).WriteManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}

	r := run(t, env, "info", id)
	if r.code != exitOK {
		t.Fatalf("info: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stdout, "\n"); n > 50 {
		t.Errorf("info printed %d lines for 201 tables, want a summary:\n%s", n, r.stdout)
	}
	for _, want := range []string{
		fmt.Sprintf("201 (row counts exact, counted in the archive), %d rows", total),
		`1000000  "Schéma ""q"".x"."big table"`, // the most rows, quoted
		"tenant_199.orders",
		"and 191 more", "--tables",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "tenant_000.orders") {
		t.Errorf("info lists a table of the fewest rows in its summary:\n%s", r.stdout)
	}

	r = run(t, env, "info", id, "--tables")
	if r.code != exitOK {
		t.Fatalf("info --tables: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tc := range tables {
		if want := fmt.Sprintf("%d  %s.", tc.Rows, quoteIdent(tc.Schema)); !strings.Contains(r.stdout, want) {
			t.Fatalf("info --tables lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "more") {
		t.Errorf("info --tables still summarises:\n%s", r.stdout)
	}
}

func quoteIdent(s string) string {
	if strings.HasPrefix(s, "tenant_") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
