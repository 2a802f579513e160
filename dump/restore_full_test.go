package dump

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestRestoreJobsTmpdirFull: a parallel restore whose temporary archive
// does not fit in TMPDIR says where it was written, how much it needs and
// what to do, and changes nothing.
func TestRestoreJobsTmpdirFull(t *testing.T) {
	tmp := t.TempDir()
	if err := unix.Mount("tmpfs", tmp, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mount a tmpfs: %v (needs root)", err)
	}
	t.Cleanup(func() { unix.Unmount(tmp, unix.MNT_DETACH) })
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 2000) // a ~0.6 MB archive
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := captureInto(t, pg, src, st, true)
	target := pg.CreateDB(t)
	_, err = Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Jobs: 2, TempDir: tmp})
	for _, want := range []string{"no space left on device", "needs " + config.HumanBytes(m.DumpBytes), "in " + tmp, "TMPDIR", "without --jobs", "nothing was changed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore --jobs into a full TMPDIR: error lacks %q: %v", want, err)
		}
	}
	if n := pg.QueryString(t, target, `SELECT count(*)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace`); n != "0" {
		t.Errorf("the target holds %s relations", n)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("TMPDIR holds %v", left)
	}
}

// TestPassfileNamesTmpdir: a child's passfile that cannot be written
// names the directory, and TMPDIR, which decides it.
func TestPassfileNamesTmpdir(t *testing.T) {
	missing := t.TempDir() + "/gone"
	_, err := conn(t, "postgres://app:s3cret@127.0.0.1:5432/app").forChild(missing)
	if err == nil || !strings.Contains(err.Error(), missing+" (TMPDIR)") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("passfile in a missing directory: %v, want an error naming %s (TMPDIR) without the password", err, missing)
	}
}

// TestDatabaseStatements: pg_dump's SQL for one database entry, split
// into statements, with the database's name, quoted by pg_dump only where
// it must be, renamed to the target's: never inside a literal or a quoted
// identifier, nor a longer name that starts with it.
func TestDatabaseStatements(t *testing.T) {
	for _, tc := range []struct {
		sql, name string
		want      []string
	}{
		{"REVOKE CONNECT,TEMPORARY ON DATABASE app FROM PUBLIC;\nGRANT CONNECT ON DATABASE app TO r;\n", "app",
			[]string{`REVOKE CONNECT,TEMPORARY ON DATABASE "new" FROM PUBLIC;`, `GRANT CONNECT ON DATABASE "new" TO r;`}},
		{"ALTER DATABASE app SET work_mem TO '64MB';\nALTER ROLE r IN DATABASE app SET x TO 'app';", "app",
			[]string{`ALTER DATABASE "new" SET work_mem TO '64MB';`, `ALTER ROLE r IN DATABASE "new" SET x TO 'app';`}},
		{"COMMENT ON DATABASE app IS 'the DATABASE app; it''s prod';\n", "app", []string{`COMMENT ON DATABASE "new" IS 'the DATABASE app; it''s prod';`}},
		{"COMMENT ON DATABASE app IS E'a\\'; DATABASE app';\n", "app", []string{`COMMENT ON DATABASE "new" IS E'a\'; DATABASE app';`}},
		{"GRANT CONNECT ON DATABASE app_2 TO r;", "app", []string{"GRANT CONNECT ON DATABASE app_2 TO r;"}},
		{`REVOKE ALL ON DATABASE "My ""Db""" FROM PUBLIC;`, `My "Db"`, []string{`REVOKE ALL ON DATABASE "new" FROM PUBLIC;`}},
		{"ALTER ROLE \"DATABASE app x\" IN DATABASE app SET search_path TO 'DATABASE app';", "app",
			[]string{"ALTER ROLE \"DATABASE app x\" IN DATABASE \"new\" SET search_path TO 'DATABASE app';"}},
		{"ALTER DATABASE app SET search_path TO 'a$b';", "app", []string{`ALTER DATABASE "new" SET search_path TO 'a$b';`}},
	} {
		if got := databaseStatements(tc.sql, tc.name, `"new"`); !slices.Equal(got, tc.want) {
			t.Errorf("databaseStatements(%q, %q) = %q, want %q", tc.sql, tc.name, got, tc.want)
		}
	}
}
