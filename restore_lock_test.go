package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestRestoreOverTheSourceTakesTheBackupLock: a restore into the database
// pgbackups backs up holds the backup lock while it runs, so no scheduled
// backup takes the half-restored database (and no retention removes the
// day's good backup for it); while a backup or prune holds the lock, the
// restore is refused before it changes anything.
func TestRestoreOverTheSourceTakesTheBackupLock(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g")
	store := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store, "PGBACKUPS_GLOBALS=false"}
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	id := lastLine(r.stdout)
	pg.Exec(t, db, "INSERT INTO t VALUES (0, 'after the backup')")

	st, err := file.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dump.ParseConn(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	lock := daemon.AdvisoryLock{Conn: c, Key: daemon.LockKey(storageLocation(st, store), db)}
	release, err := lock.TryLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	restore := []string{"restore", id, "--to", pg.URL(db), "--confirm", db, "--clean"}
	r = run(t, env, restore...)
	release()
	if r.code != exitFailure || !strings.Contains(r.stderr, "a backup or prune is running") || !strings.Contains(r.stderr, "nothing was restored") {
		t.Errorf("restore over the source while the lock is held: exit %d, want 1 saying a backup or prune is running:\n%s", r.code, r.stderr)
	}
	if got := pg.QueryString(t, db, "SELECT count(*) FROM t WHERE id = 0"); got != "1" {
		t.Fatalf("the refused restore changed the database: %s rows written after the backup, want 1", got)
	}

	// While the restore runs, the lock is the restore's: seen in pg_locks,
	// not by taking it, which could make the restore find it held.
	done := make(chan result, 1)
	go func() { done <- run(t, env, restore...) }()
	var sawHeld bool
poll:
	for {
		select {
		case r = <-done:
			break poll
		case <-time.After(5 * time.Millisecond):
		}
		if pg.QueryString(t, "postgres", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") != "0" {
			sawHeld = true
		}
	}
	if r.code != 0 || !strings.Contains(r.stderr, "holding the backup lock until the restore ends") {
		t.Fatalf("restore over the source: exit %d\n%s", r.code, r.stderr)
	}
	if !sawHeld {
		t.Error("the backup lock was free while the restore over the source ran")
	}
	if got := pg.QueryString(t, db, "SELECT count(*) FROM t WHERE id = 0"); got != "0" {
		t.Errorf("after the restore %s rows written after the backup, want 0", got)
	}
	if rel, err := lock.TryLock(context.Background()); err != nil {
		t.Errorf("the backup lock after the restore: %v", err)
	} else {
		rel()
	}
}
