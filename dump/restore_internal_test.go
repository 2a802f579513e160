package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// clientBins makes root/<major>/bin for each major, empty, points
// debianBinGlob at them and empties PATH, for the test's length, and
// returns the bin directories in the order given.
func clientBins(t *testing.T, majors ...int) []string {
	t.Helper()
	old := debianBinGlob
	t.Cleanup(func() { debianBinGlob = old })
	root := t.TempDir()
	debianBinGlob = filepath.Join(root, "*", "bin")
	t.Setenv("PATH", t.TempDir())
	dirs := make([]string, len(majors))
	for i, v := range majors {
		dirs[i] = filepath.Join(root, strconv.Itoa(v), "bin")
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// fakeClients makes a fake pg_restore of each major in clientBins, and
// returns their root (root/<major>/bin/pg_restore).
func fakeClients(t *testing.T, majors ...int) string {
	t.Helper()
	dirs := clientBins(t, majors...)
	for i, d := range dirs {
		fakeTool(t, d, "pg_restore", fmt.Sprintf("%d.2", majors[i]))
	}
	if len(dirs) == 0 {
		return ""
	}
	return filepath.Dir(filepath.Dir(dirs[0]))
}

// threeRowBackup takes a backup, with globals, of a new database holding
// one table of three rows into a file store of its own.
func threeRowBackup(t *testing.T, pg *testenv.Postgres) (*file.Store, storage.Manifest) {
	t.Helper()
	src := pg.CreateDB(t)
	pg.Exec(t, src, `CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2), (3)`)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st, captureInto(t, pg, src, st, false)
}

// captureInto takes a backup of db into st with pg's own pg_dump.
func captureInto(t *testing.T, pg *testenv.Postgres, db string, st storage.Store, skipGlobals bool) storage.Manifest {
	t.Helper()
	m, err := Capture(context.Background(), CaptureOptions{Conn: conn(t, pg.URL(db)), Store: st, PgBinDir: pg.BinDir, CompressionLevel: 3, LockWaitTimeout: 5 * time.Second, SkipGlobals: skipGlobals})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// serverInfo is what Preflight reports for a server of that major version.
func serverInfo(major int) ServerInfo {
	return ServerInfo{Version: fmt.Sprintf("%d.4 (Debian %d.4-1.pgdg120+1)", major, major), VersionNum: major*10000 + 4}
}

// archiveOf is a manifest of a backup of a server of major version server
// taken with pg_dump of major version dump.
func archiveOf(server, dump int) storage.Manifest {
	return storage.Manifest{ID: "20260101-000000-abcd", PgDumpVersion: fmt.Sprintf("%d.2", dump),
		ServerVersion: fmt.Sprintf("%d.4", server), ServerVersionNum: server*10000 + 4}
}

// TestRestoreToolFollowsTheTarget: restore picks pg_restore by the target
// server's major version, not the newest installed: pg_restore 17 and
// later send SET transaction_timeout, which 16 and older reject.
func TestRestoreToolFollowsTheTarget(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		installed       []int
		archive, target int
		want            int      // the major chosen, or 0 for an error
		errWants        []string // what that error must say
	}{
		{installed: []int{15, 17}, archive: 15, target: 15, want: 15},
		{installed: []int{15, 17}, archive: 15, target: 17, want: 17},
		{installed: []int{15, 16, 17}, archive: 15, target: 16, want: 16},
		{installed: []int{14, 15, 16, 17, 18}, archive: 15, target: 15, want: 15}, // the Docker image
		{installed: []int{14, 15, 16, 17, 18}, archive: 14, target: 16, want: 16},
		{installed: []int{14, 15, 16, 17, 18}, archive: 16, target: 15, want: 16}, // an older target, but 16 sends no transaction_timeout
		{installed: []int{14, 15, 16, 17, 18}, archive: 17, target: 18, want: 18},
		{installed: []int{14, 15, 16, 17, 18}, archive: 18, target: 17, want: 18},
		{installed: []int{15, 18}, archive: 16, target: 17, want: 18}, // the oldest that fits both
		{installed: []int{14, 16}, archive: 14, target: 15, want: 16},
		// The target's own is missing and the newer one would be refused
		// by it: the archive's own restores into the newer server.
		{installed: []int{15, 17}, archive: 15, target: 16, want: 15},
		// Only a pg_restore that cannot restore into the target fits.
		{installed: []int{17}, archive: 15, target: 16,
			errWants: []string{"cannot restore into PostgreSQL 16.4 with pg_restore 17.2 (ROOT/17/bin/pg_restore)", "transaction_timeout", "PostgreSQL 16 and older reject", "postgresql-client-16", "nothing was changed"}},
		{installed: []int{17, 18}, archive: 14, target: 14,
			errWants: []string{"PostgreSQL 14.4 with pg_restore 17.2", "postgresql-client-14"}},
		// A downgrade restore from 17 on: no pg_restore can do it.
		{installed: []int{14, 15, 16, 17, 18}, archive: 17, target: 16,
			errWants: []string{"a downgrade restore", "the backup is of PostgreSQL 17.4 (pg_dump 17.2), and the target is PostgreSQL 16.4", "pg_restore 17 or newer reads", "transaction_timeout", "PostgreSQL 16 and older reject", "PostgreSQL 17 or newer server", "nothing was changed"}},
		{installed: []int{15}, archive: 18, target: 15,
			errWants: []string{"a downgrade restore", "PostgreSQL 18.4 (pg_dump 18.2)", "target is PostgreSQL 15.4", "pg_restore 18 or newer"}},
		// Nothing reads the archive at all.
		{installed: []int{15, 16}, archive: 15, target: 18,
			errWants: []string{"no pg_restore of major version 18 or newer", "postgresql-client-18"}},
	} {
		name := fmt.Sprintf("installed %v, archive %d, target %d", tc.installed, tc.archive, tc.target)
		root := fakeClients(t, tc.installed...)
		tool, err := restoreTool(ctx, "", archiveOf(tc.archive, tc.archive), serverInfo(tc.target))
		if tc.want != 0 {
			if err != nil || tool.Major != tc.want || tool.Path != filepath.Join(root, strconv.Itoa(tc.want), "bin", "pg_restore") {
				t.Errorf("%s: %+v, %v; want pg_restore %d", name, tool, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: chose %+v; want an error", name, tool)
			continue
		}
		for _, w := range tc.errWants {
			if w = strings.ReplaceAll(w, "ROOT", root); !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", name, w, err)
			}
		}
	}

	// A backup of a 16 server dumped by pg_dump 17 (capture's fallback
	// when 16's is not installed) says so and what to install.
	fakeClients(t, 16, 17)
	_, err := restoreTool(ctx, "", archiveOf(16, 17), serverInfo(16))
	for _, w := range []string{"cannot be restored into PostgreSQL 16.4", "of a PostgreSQL 16.4 server, but capture used the newer pg_dump 17.2", "transaction_timeout", "install postgresql-client-16"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("a 16 server's backup by pg_dump 17 into 16: error lacks %q: %v", w, err)
		}
	}

	// PGBACKUPS_PG_BIN_DIR is searched first, as for pg_dump; one that
	// cannot restore into the target is named in the error.
	fakeClients(t, 15, 17)
	own := t.TempDir()
	fakeTool(t, own, "pg_restore", "16.1")
	if tool, err := restoreTool(ctx, own, archiveOf(15, 15), serverInfo(15)); err != nil || tool.Path != filepath.Join(own, "pg_restore") {
		t.Errorf("with PG_BIN_DIR's 16 for a 15 target: %+v, %v; want PG_BIN_DIR's", tool, err)
	}
	// PG_BIN_DIR's 18 would be refused by a 15 target: the installed 15
	// restores instead.
	fakeTool(t, own, "pg_restore", "18.1")
	if tool, err := restoreTool(ctx, own, archiveOf(15, 15), serverInfo(15)); err != nil || tool.Major != 15 {
		t.Errorf("with PG_BIN_DIR's 18 and an installed 15 for a 15 target: %+v, %v; want the installed 15", tool, err)
	}
	// With nothing else that fits, the error names PG_BIN_DIR's.
	fakeClients(t, 17)
	if _, err := restoreTool(ctx, own, archiveOf(15, 15), serverInfo(15)); err == nil ||
		!strings.Contains(err.Error(), filepath.Join(own, "pg_restore")) || !strings.Contains(err.Error(), "PGBACKUPS_PG_BIN_DIR") {
		t.Errorf("with PG_BIN_DIR's 18 for a 15 target: %v; want an error naming it", err)
	}
}

// TestRestoreUsesTheTargetsPgRestore restores into the real test server
// with a newer pg_restore installed beside its own, the Docker image's
// layout, and no PGBACKUPS_PG_BIN_DIR. The newer one stands in for a
// pg_restore 17+ against a 16-or-older server: it fails as that does.
func TestRestoreUsesTheTargetsPgRestore(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	st, m := threeRowBackup(t, pg)

	bins := clientBins(t, pg.Major, max(pg.Major+1, firstTimeoutSetter))
	own, newer := bins[0], bins[1]
	if err := os.Symlink(pg.Tool("pg_restore"), filepath.Join(own, "pg_restore")); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = --version ]; then echo 'pg_restore (PostgreSQL) %s.1'; exit 0; fi
echo 'pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"' >&2
echo 'Command was: SET transaction_timeout = 0;' >&2
exit 1
`, filepath.Base(filepath.Dir(newer)))
	if err := os.WriteFile(filepath.Join(newer, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	target := pg.CreateDB(t)
	res, err := Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target))})
	if err != nil {
		t.Fatalf("restore with the server's own and a newer pg_restore installed: %v", err)
	}
	if res.Rows != 3 || pg.QueryString(t, target, `SELECT count(*)::text FROM a`) != "3" {
		t.Fatalf("restored %+v", res)
	}
	scratch := conn(t, pg.URL(pg.CreateDB(t)))
	if _, err := Verify(ctx, VerifyOptions{Store: st, Manifest: m, RestoreTo: &scratch}); err != nil {
		t.Fatalf("verify --restore-to with the server's own and a newer pg_restore installed: %v", err)
	}

	if pg.Major >= firstTimeoutSetter {
		return // the newer one would restore into this server
	}
	// Only the newer one left: refused, saying why, before anything runs.
	if err := os.Remove(filepath.Join(own, "pg_restore")); err != nil {
		t.Fatal(err)
	}
	empty := pg.CreateDB(t)
	_, err = Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(empty))})
	for _, w := range []string{"transaction_timeout", fmt.Sprintf("postgresql-client-%d", pg.Major), "nothing was changed"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("restore with only a newer pg_restore: error lacks %q: %v", w, err)
		}
	}
}

func conn(t *testing.T, raw string) Conn {
	t.Helper()
	c, err := ParseConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRestoreWithGlobalsNeedsPsqlFirst: with --with-globals, a missing
// psql fails the restore before anything is done, not after a parallel
// restore has decompressed the whole archive.
func TestRestoreWithGlobalsNeedsPsqlFirst(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	st, m := threeRowBackup(t, pg)
	if m.GlobalsKey == "" {
		t.Fatal("the backup has no globals")
	}

	// pg_restore installed, psql not.
	own := clientBins(t, pg.Major)[0]
	if err := os.Symlink(pg.Tool("pg_restore"), filepath.Join(own, "pg_restore")); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	target := pg.CreateDB(t)
	res, err := Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), WithGlobals: true, Jobs: 2})
	if err == nil || !strings.Contains(err.Error(), "psql") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("restore --with-globals without psql: %v, want an error naming psql that says nothing was changed", err)
	}
	if strings.Contains(err.Error(), "version 0") || strings.Contains(err.Error(), "client-0") {
		t.Errorf("the error asks for a psql of version 0: %v", err)
	}
	if res.TempFile != "" {
		t.Errorf("the archive was decompressed (%s) before psql was looked for", res.TempFile)
	}
	if n := pg.QueryString(t, target, `SELECT count(*)::text FROM pg_class WHERE relname = 'a'`); n != "0" {
		t.Errorf("the target holds table a")
	}
}

// TestRestoreDamageAfterPgRestoreFinished: a pg_restore that exits 0
// without reading the whole archive, of a backup damaged after that point:
// the restore fails on the checksums, and says the target now holds what
// pg_restore restored.
func TestRestoreDamageAfterPgRestoreFinished(t *testing.T) {
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 2000)
	root := t.TempDir()
	st, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	m := captureInto(t, pg, src, st, true)
	// The same size, one byte changed near the end.
	data := filepath.Join(root, filepath.FromSlash(m.DataKey))
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 0xff
	if err := os.WriteFile(data, b, 0o600); err != nil {
		t.Fatal(err)
	}

	own := clientBins(t, pg.Major)[0]
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = --version ]; then exec %s --version; fi
head -c 4096 >/dev/null
exit 0
`, pg.Tool("pg_restore"))
	if err := os.WriteFile(filepath.Join(own, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(pg.CreateDB(t)))})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "the target database holds what it restored") {
		t.Fatalf("restore: %v, want ErrCorrupt saying the target holds what pg_restore restored", err)
	}
}
