package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestPruneRefusesAllKeepZero: `pgbackups prune` with every PGBACKUPS_KEEP_*
// at 0 (meant as "retention off") deleted every backup but the newest. It
// now refuses before touching storage, and says what to set; the daemon
// reads the same configuration.
func TestPruneRefusesAllKeepZero(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat := storage.Catalog{Store: st}
	var ids []string
	for i := range 3 {
		at := time.Now().Add(-time.Duration(i+1) * 24 * time.Hour)
		id := storage.NewID(at)
		n, err := st.Put(ctx, storage.DataKey(id), strings.NewReader("data"))
		if err != nil {
			t.Fatal(err)
		}
		m := storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Minute),
			DataKey: storage.DataKey(id), StoredBytes: n, SHA256: strings.Repeat("a", 64), DumpSHA256: strings.Repeat("b", 64)}
		if err := cat.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir,
		"PGBACKUPS_KEEP_LAST=0", "PGBACKUPS_KEEP_DAILY=0", "PGBACKUPS_KEEP_WEEKLY=0", "PGBACKUPS_KEEP_MONTHLY=0"}
	r := run(t, env, "prune")
	if r.code != exitUsage || !strings.Contains(r.stderr, "PGBACKUPS_KEEP_LAST: 0") || !strings.Contains(r.stderr, "set PGBACKUPS_KEEP_LAST=1") {
		t.Errorf("prune: exit %d, want %d refusing the policy:\n%s%s", r.code, exitUsage, r.stdout, r.stderr)
	}
	for _, id := range ids {
		if _, err := cat.Manifest(ctx, id); err != nil {
			t.Errorf("backup %s: %v", id, err)
		}
	}
	// The commands that do not apply retention do not refuse it: a
	// restore must not wait on a retention setting.
	if r := run(t, env, "list"); r.code != 0 || !strings.Contains(r.stdout, ids[0]) {
		t.Errorf("list: exit %d, want the backups listed:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "daemon"); r.code != exitUsage || !strings.Contains(r.stderr, "PGBACKUPS_KEEP_LAST: 0") {
		t.Errorf("daemon: exit %d, want %d refusing the policy:\n%s", r.code, exitUsage, r.stderr)
	}
}

// TestPruneFailureIsNoSummary: a prune that failed printed "removed 0
// items (0 B), kept 0 backups" and logged "prune completed" before its
// error, as if the pass had worked.
func TestPruneFailureIsNoSummary(t *testing.T) {
	env := []string{
		"PGBACKUPS_STORAGE_URL=s3://pgbackups-gone/app", "AWS_ENDPOINT_URL_S3=http://127.0.0.1:1", "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test-secret",
	}
	r := run(t, env, "prune")
	if r.code != exitFailure || !strings.Contains(r.stderr, "prune did not complete") || strings.Contains(r.stderr, "prune completed") || strings.Contains(r.stderr, "kept 0 backups") {
		t.Fatalf("prune against a storage that refuses: exit %d, want 1 and no success summary\n%s", r.code, r.stderr)
	}
}
