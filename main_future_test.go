package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestListMisdatedBackup: a backup stamped a month ahead of this host's
// clock (taken on a host whose clock ran ahead) is listed with what is
// wrong, `latest` stops at it rather than restore it or pass it over, and
// info by its id says why.
func TestListMisdatedBackup(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir}
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	put := func(at time.Time) string {
		id := storage.NewID(at)
		n, err := st.Put(ctx, storage.DataKey(id), strings.NewReader("data"))
		if err != nil {
			t.Fatal(err)
		}
		if err := (storage.Catalog{Store: st}).WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusCompleted, Database: "app",
			StartedAt: at, FinishedAt: at.Add(time.Minute), DataKey: storage.DataKey(id), StoredBytes: n,
			SHA256: strings.Repeat("a", 64), DumpSHA256: strings.Repeat("b", 64)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	good, ahead := put(now.Add(-time.Hour)), put(now.Add(30*24*time.Hour))
	const says = "after this host's clock: the clock of the host that took it runs ahead (or this one's is behind)"

	r := run(t, env, "list")
	if r.code != exitOK || !strings.Contains(r.stdout, ahead+"  misdated") || !strings.Contains(r.stdout, good+"  completed") ||
		!strings.Contains(r.stderr, "warning: backup "+ahead+": start time not trusted: started at ") || !strings.Contains(r.stderr, says) {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "list", "--json")
	var rows []listRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 || rows[0].ID != ahead ||
		len(rows[0].Problems) != 1 || !strings.Contains(rows[0].Problems[0], says) || rows[1].Problems != nil {
		t.Errorf("list --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	r = run(t, env, "info", "latest")
	if r.code == exitOK || !strings.Contains(r.stderr, "latest: backup "+ahead+": start time not trusted") || !strings.Contains(r.stderr, "name a backup id") {
		t.Errorf("info latest: exit %d, want an error naming %s\n%s%s", r.code, ahead, r.stdout, r.stderr)
	}
	r = run(t, env, "info", ahead)
	if r.code != exitOK || !strings.Contains(r.stdout, "Problem:") || !strings.Contains(r.stdout, says) {
		t.Errorf("info %s: exit %d\n%s%s", ahead, r.code, r.stdout, r.stderr)
	}
	// Its data may be good, and the newest: prune does not suggest
	// deleting it, as it does a damaged backup.
	r = run(t, env, "prune", "--dry-run")
	if r.code != exitOK || !strings.Contains(r.stderr, "left alone: "+ahead+" is not counted as a good backup until this host's clock reaches its start") ||
		strings.Contains(r.stderr, "pgbackups delete") {
		t.Errorf("prune --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
