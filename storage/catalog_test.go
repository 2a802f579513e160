package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// fileCatalog is a catalog over a fresh local directory store.
func fileCatalog(t *testing.T) (*file.Store, storage.Catalog) {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st, storage.Catalog{Store: st}
}

// TestSameSecondOrder: two backups started within one second; their ids
// tie on the time and the random suffix would decide. Entries (list) and
// latest follow the start times, as retention does.
func TestSameSecondOrder(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	at := time.Date(2026, 11, 28, 4, 17, 35, 0, time.UTC)
	first, second := "20261128-041735-zzzz", "20261128-041735-aaaa" // the later one sorts first by id
	for id, started := range map[string]time.Time{first: at.Add(100 * time.Millisecond), second: at.Add(800 * time.Millisecond)} {
		if err := cat.WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: started, FinishedAt: started.Add(50 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	// And a capture of the same second still under way (no manifest yet),
	// whose id sorts between them: the order must stay total.
	if _, err := st.Put(ctx, storage.DataKey("20261128-041735-mmmm"), strings.NewReader("partial")); err != nil {
		t.Fatal(err)
	}
	es, err := cat.Entries(ctx)
	if err != nil || len(es) != 3 || es[0].ID != second || es[1].ID != first {
		t.Fatalf("Entries = %v, %v; want %s, %s, then the one without a manifest", es, err, second, first)
	}
	if m, err := cat.Resolve(ctx, "latest"); err != nil || m.ID != second {
		t.Errorf("latest = %s, %v; want %s, started later", m.ID, err, second)
	}
	if m, _, err := cat.Newest(ctx); err != nil || m.ID != second {
		t.Errorf("Newest = %s, %v; want %s, started later", m.ID, err, second)
	}
}

// TestNewest: what a restarted daemon reads from storage, the newest
// completed backup and a failed one after it, passing over unreadable
// manifests (list shows those) and objects without one.
func TestNewest(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	if _, _, err := cat.Newest(ctx); !errors.Is(err, storage.ErrNoBackups) {
		t.Errorf("empty store: %v, want ErrNoBackups", err)
	}
	now := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	put := func(hoursAgo int, status string) string {
		t.Helper()
		at := now.Add(-time.Duration(hoursAgo) * time.Hour)
		id := storage.NewID(at)
		if err := cat.WriteManifest(ctx, storage.Manifest{ID: id, Status: status, StartedAt: at, FinishedAt: at.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	failedOld := put(5, storage.StatusFailed)
	if _, f, err := cat.Newest(ctx); !errors.Is(err, storage.ErrNoBackups) || f == nil || f.ID != failedOld {
		t.Errorf("only a failure: %v, %+v", err, f)
	}
	good := put(4, storage.StatusCompleted)
	if g, f, err := cat.Newest(ctx); err != nil || g.ID != good || f != nil {
		t.Errorf("a failure before the success: %s, %+v, %v; want %s and no failure", g.ID, f, err, good)
	}
	failed1 := put(3, storage.StatusFailed)
	failed2 := put(2, storage.StatusFailed)
	unreadable := storage.NewID(now.Add(-time.Hour))
	st.Put(ctx, storage.ManifestKey(unreadable), strings.NewReader("{"))
	st.Put(ctx, storage.DataKey(storage.NewID(now)), strings.NewReader("a capture under way"))
	if g, f, err := cat.Newest(ctx); err != nil || g.ID != good || f == nil || f.ID != failed2 {
		t.Errorf("failures after the success: %s, %+v, %v; want %s and %s (not %s)", g.ID, f, err, good, failed2, failed1)
	}
}
