package main

import (
	"testing"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/dump"
)

// clearLibpqEnv unsets the PG* variables pgx reads, for the test's length.
func clearLibpqEnv(t *testing.T) {
	for _, v := range []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGTARGETSESSIONATTRS"} {
		t.Setenv(v, "")
	}
}

func TestRestoreIsSourceComparesResolvedConfigs(t *testing.T) {
	clearLibpqEnv(t)
	for _, tc := range []struct {
		source, target string
		want           bool
	}{
		{"postgres://u@localhost:5432/app", "postgres://u@127.0.0.1/app", true},
		{"postgres://u@[::1]:5432/app", "host=localhost dbname=app", true},
		{"postgres://u@127.0.0.2/app", "postgres://u@localhost/app", true},
		{"host=/var/run/postgresql dbname=app", "postgres://u@localhost/app", true},
		{"host=/tmp port=5433 dbname=app", "postgres://u@localhost/app", false},
		{"postgres://u@localhost:5433/app", "postgres://u@localhost:5432/app", false},
		{"postgres://u@localhost/app", "postgres://u@localhost/other", false},
		{"postgres://u@DB.example.com/app", "postgres://v@db.example.com:5432/app", true},
		{"postgres://u@db1.example.com/app", "postgres://u@db2.example.com/app", false},
		{"postgres://u@db1,db2:5433/app", "postgres://u@db2:5433/app", true},
		{"postgres://u@db.example.com/app", "postgres://u@localhost/app", false},
		{"host=localhost user=app", "postgres://x@localhost/app", true}, // dbname defaults to the user
	} {
		src, err := dump.ParseConn(tc.source)
		if err != nil {
			t.Fatal(err)
		}
		target, err := dump.ParseConn(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		m := &Main{cfg: &config.Config{DatabaseURL: tc.source}}
		if got := m.isSource(target); got != tc.want {
			t.Errorf("isSource(%s) with source %s = %v, want %v", target, src, got, tc.want)
		}
	}
}

func TestRestoreIsSourceWithLibpqVariables(t *testing.T) {
	clearLibpqEnv(t)
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", "5544")
	t.Setenv("PGDATABASE", "shop")
	m := &Main{cfg: &config.Config{}} // PGBACKUPS_DATABASE_URL unset: the PG* variables decide
	for target, want := range map[string]bool{
		"postgres://u@localhost:5544/shop": true,
		"postgres://u@localhost:5544/dev":  false,
		"postgres://u@localhost:5432/shop": false,
		"postgres://u@localhost/shop":      true, // PGPORT applies to it too
	} {
		c, err := dump.ParseConn(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.isSource(c); got != want {
			t.Errorf("isSource(%s) = %v, want %v", target, got, want)
		}
	}
}
