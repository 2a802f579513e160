package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestNewestOutcomes: what a restarted daemon reads from storage, the
// newest completed backup and a failed one after it, passing over
// unreadable manifests (list shows those) and objects without one.
func TestNewestOutcomes(t *testing.T) {
	ctx := context.Background()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cat := storage.Catalog{Store: st}
	if _, _, err := newestOutcomes(ctx, cat); !errors.Is(err, storage.ErrNoBackups) {
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
	if _, f, err := newestOutcomes(ctx, cat); !errors.Is(err, storage.ErrNoBackups) || f == nil || f.ID != failedOld {
		t.Errorf("only a failure: %v, %+v", err, f)
	}
	good := put(4, storage.StatusCompleted)
	if g, f, err := newestOutcomes(ctx, cat); err != nil || g.ID != good || f != nil {
		t.Errorf("a failure before the success: %s, %+v, %v; want %s and no failure", g.ID, f, err, good)
	}
	failed1 := put(3, storage.StatusFailed)
	failed2 := put(2, storage.StatusFailed)
	unreadable := storage.NewID(now.Add(-time.Hour))
	st.Put(ctx, storage.ManifestKey(unreadable), strings.NewReader("{"))
	st.Put(ctx, storage.DataKey(storage.NewID(now)), strings.NewReader("a capture under way"))
	g, f, err := newestOutcomes(ctx, cat)
	if err != nil || g.ID != good || f == nil || f.ID != failed2 {
		t.Errorf("failures after the success: %s, %+v, %v; want %s and %s (not %s)", g.ID, f, err, good, failed2, failed1)
	}
	if m, err := latestFailed(ctx, cat); err != nil || m.ID != failed2 {
		t.Errorf("latestFailed = %s, %v", m.ID, err)
	}
	if m, err := latestCompleted(ctx, cat); err != nil || m.ID != good {
		t.Errorf("latestCompleted = %s, %v", m.ID, err)
	}

	// Two backups within one second: their start times decide, not the
	// ids' random suffixes.
	at := time.Date(2026, 3, 5, 12, 30, 0, 0, time.UTC)
	for id, started := range map[string]time.Time{"20260305-123000-zzzz": at, "20260305-123000-aaaa": at.Add(900 * time.Millisecond)} {
		if err := cat.WriteManifest(ctx, storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: started, FinishedAt: started.Add(50 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := latestCompleted(ctx, cat); err != nil || m.ID != "20260305-123000-aaaa" {
		t.Errorf("latestCompleted = %s, %v; want the one of the same second started later", m.ID, err)
	}
}
