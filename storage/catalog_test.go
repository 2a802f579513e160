package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestSameSecondOrder: two backups started within one second; their ids
// tie on the time and the random suffix would decide. Entries (list) and
// latest follow the start times, as retention does.
func TestSameSecondOrder(t *testing.T) {
	ctx := context.Background()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cat := storage.Catalog{Store: st}
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
}
