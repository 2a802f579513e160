package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestDeleteLeavesACaptureInProgress: `pgbackups delete ID` with the id a
// running capture logged ("backup starting backup=ID"). While the data
// streams, storage lists nothing of it: delete said "no such backup", and
// the backup appeared moments later. Once the data object is in place and
// the manifest not yet, delete removed the data: the capture then failed
// ("vanished before its manifest was written"), or its manifest landed
// over a missing data object. Now delete refuses, and says why, until the
// capture is done or its leftovers are older than PGBACKUPS_ORPHAN_GRACE.
func TestDeleteLeavesACaptureInProgress(t *testing.T) {
	store := t.TempDir()
	env := []string{"PGBACKUPS_STORAGE_URL=" + store}
	id := storage.NewID(time.Now())
	dir := filepath.Join(store, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	// Streaming: the file store's temporary file, hidden from List.
	tmp := filepath.Join(dir, ".tmp-"+id+".dump.zst-123")
	if err := os.WriteFile(tmp, []byte("half a dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "delete", id, "--confirm", id)
	if r.code != exitFailure || !strings.Contains(r.stderr, "a capture may be writing it now") {
		t.Errorf("delete during the upload: exit %d, want 1 saying a capture may be writing it:\n%s", r.code, r.stderr)
	}
	os.Remove(tmp)

	// The data object in place, the manifest not yet written.
	data := filepath.Join(dir, id+".dump.zst")
	if err := os.WriteFile(data, []byte("a whole dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "delete", id, "--confirm", id)
	if r.code != exitFailure || !strings.Contains(r.stderr, "has no manifest yet") || !strings.Contains(r.stderr, "a capture may still be writing it") {
		t.Errorf("delete before the manifest: exit %d, want 1 saying a capture may still be writing it:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("the capture's data object was deleted: %v", err)
	}

	// Its mtime two days old, as a copy that keeps mtimes leaves it, but
	// arrived just now: still left alone. main_orphan_test.go has a dead
	// capture's leftovers deleted.
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(data, old, old)
	if r := run(t, env, "delete", id, "--confirm", id); r.code != exitFailure || !strings.Contains(r.stderr, "has no manifest yet") {
		t.Errorf("delete of objects with an old mtime that arrived just now: exit %d, want 1 saying a capture may still be writing it\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("the object that arrived just now was deleted: %v", err)
	}
}

// TestDeleteLeavesAnUploadInProgress: the same on S3, where a capture's
// data is an unfinished multipart upload until it completes.
func TestDeleteLeavesAnUploadInProgress(t *testing.T) {
	srv := testenv.S3(t)
	id := storage.NewID(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := srv.Prefix + "/" + storage.DataKey(id)
	up, err := srv.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, srv.Env(), "delete", id, "--confirm", id)
	if r.code != exitFailure || !strings.Contains(r.stderr, "a capture may be writing it now") {
		t.Errorf("delete during the upload: exit %d, want 1 saying a capture may be writing it:\n%s", r.code, r.stderr)
	}
	if _, err := srv.Client().AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String(key), UploadId: up.UploadId}); err != nil {
		t.Fatal(err)
	}
	// Nothing being written, nothing stored: no such backup.
	if r := run(t, srv.Env(), "delete", id, "--confirm", id); r.code != exitFailure || !strings.Contains(r.stderr, "no such backup in") {
		t.Errorf("delete of an id with nothing stored: exit %d\n%s", r.code, r.stderr)
	}
}

// TestDeleteTakesTheBackupLock: with the database configured, delete takes
// the backup lock, as capture and prune do: refused while another process
// holds it (a capture writing, a prune deciding from a listing that shows
// the backup), and, with it, sure no capture is writing: a dead capture's
// recent leftovers go at once instead of after PGBACKUPS_ORPHAN_GRACE.
func TestDeleteTakesTheBackupLock(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	store := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store}
	id := storage.NewID(time.Now())
	dir := filepath.Join(store, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, id+".dump.zst")
	if err := os.WriteFile(data, []byte("a dead capture's dump"), 0o600); err != nil {
		t.Fatal(err)
	}

	st, err := file.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dump.ParseConn(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	release, err := daemon.AdvisoryLock{Conn: c, Key: daemon.LockKey(storageLocation(st, store), db)}.TryLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "delete", id, "--confirm", id)
	release()
	if r.code != exitFailure || !strings.Contains(r.stderr, "a backup or prune is running") || !strings.Contains(r.stderr, "nothing was deleted") {
		t.Errorf("delete while the lock is held: exit %d, want 1 saying a backup or prune is running:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("deleted while the lock was held: %v", err)
	}

	r = run(t, env, "delete", id, "--confirm", id)
	if r.code != 0 {
		t.Errorf("delete of a dead capture's recent leftovers under the lock: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("leftover data object still there: %v", err)
	}
}

// TestDeleteLockOnlyOnANamedDatabase: the lock's key holds no server, so a
// lock taken through libpq's defaults (PGHOST left in an operator's shell,
// a local server on a restore host) is free whatever production's daemon
// writes. Delete then keeps its ORPHAN_GRACE guard.
func TestDeleteLockOnlyOnANamedDatabase(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	store := t.TempDir()
	env := []string{"PGBACKUPS_STORAGE_URL=" + store, "PGHOST=" + pg.Host, "PGPORT=" + strconv.Itoa(pg.Port),
		"PGUSER=" + pg.User, "PGPASSWORD=" + pg.Password, "PGDATABASE=" + db, "PGSSLMODE=disable"}
	id := storage.NewID(time.Now())
	if err := os.MkdirAll(filepath.Join(store, id), 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(store, id, id+".dump.zst")
	if err := os.WriteFile(data, []byte("a capture's dump, its manifest not yet written"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "delete", id, "--confirm", id)
	if r.code != exitFailure || !strings.Contains(r.stderr, "a capture may still be writing it") {
		t.Errorf("delete with only libpq's defaults: exit %d, want the recent object left alone:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("the capture's data object was deleted: %v", err)
	}
}
