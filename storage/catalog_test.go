package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
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
		putCompleted(t, st, storage.Manifest{ID: id, StartedAt: started, FinishedAt: started.Add(50 * time.Millisecond)})
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
	// One of that second whose manifest cannot be read sorts after those
	// with one, and may be the newest: latest stops at it.
	unreadable := "20261128-041735-bbbb"
	if _, err := st.Put(ctx, storage.ManifestKey(unreadable), strings.NewReader("{")); err != nil {
		t.Fatal(err)
	}
	if m, err := cat.Resolve(ctx, "latest"); err == nil || !strings.Contains(err.Error(), unreadable) {
		t.Errorf("latest with an unreadable manifest of the same second = %s, %v; want an error naming %s", m.ID, err, unreadable)
	}
}

// putCompleted stores m as a completed backup, with a data object of the
// size it records.
func putCompleted(t *testing.T, st *file.Store, m storage.Manifest) {
	t.Helper()
	ctx := context.Background()
	n, err := st.Put(ctx, storage.DataKey(m.ID), strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	m.Status, m.DataKey, m.StoredBytes = storage.StatusCompleted, storage.DataKey(m.ID), n
	m.SHA256, m.DumpSHA256 = strings.Repeat("a", 64), strings.Repeat("b", 64)
	if err := (storage.Catalog{Store: st}).WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
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
		m := storage.Manifest{ID: id, Status: status, StartedAt: at, FinishedAt: at.Add(time.Minute)}
		if status == storage.StatusCompleted {
			putCompleted(t, st, m)
		} else if err := cat.WriteManifest(ctx, m); err != nil {
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

	// A newer completed backup whose data object is gone: not the last
	// success (a restarted daemon said healthy on it), and latest names
	// it rather than restore it or an older one unannounced. Its globals
	// missing alone leaves it restorable.
	damaged := put(0, storage.StatusCompleted)
	if err := st.Delete(ctx, storage.DataKey(damaged)); err != nil {
		t.Fatal(err)
	}
	if g, _, err := cat.Newest(ctx); err != nil || g.ID != good {
		t.Errorf("with a newer damaged backup: Newest = %s, %v; want %s", g.ID, err, good)
	}
	if m, err := cat.Resolve(ctx, "latest"); err == nil || !errors.Is(err, storage.ErrDamaged) || !strings.Contains(err.Error(), damaged) || !strings.Contains(err.Error(), good) {
		t.Errorf("latest with a newer damaged backup = %s, %v; want an error naming %s and %s", m.ID, err, damaged, good)
	}
}

// TestManifestOfManyTables: a manifest holds one row count per table, so a
// database of a few hundred thousand tables or partitions made one too big
// to read back, and every command then called the backup corrupt. What
// WriteManifest stores reads back, and fits in what earlier versions read;
// one an earlier version stored past that reads back too.
func TestManifestOfManyTables(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	tables := func(n int, schema, table string) []storage.TableCount {
		ts := make([]storage.TableCount, n)
		for i := range ts {
			ts[i] = storage.TableCount{Schema: schema, Table: table, Rows: 123456}
		}
		return ts
	}
	manifest := func(id string, ts []storage.TableCount) storage.Manifest {
		at := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
		return storage.Manifest{ID: id, Status: storage.StatusCompleted, StartedAt: at, FinishedAt: at.Add(time.Hour),
			SHA256: "5d41402abc4b2a76b9719d911017c592", Tables: ts, TableCountMethod: "archive", Warnings: []string{"globals were not stored"}}
	}
	longest := strings.Repeat("x", 63) // NAMEDATALEN - 1
	for _, c := range []struct {
		name, id string
		tables   []storage.TableCount
		kept     bool
	}{
		{"200000 tables", "20261125-020000-k3f9", tables(200_000, "tenant_000001", "order_items_2026_01"), true},
		{"120000 tables of the longest names", "20261125-020000-m4g7", tables(120_000, longest, longest), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := manifest(c.id, c.tables)
			if err := cat.WriteManifest(ctx, m); err != nil {
				t.Fatal(err)
			}
			got, err := cat.Manifest(ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if objs, err := st.List(ctx, storage.ManifestKey(c.id)); err != nil || len(objs) != 1 || objs[0].Size > 16<<20 {
				t.Errorf("stored %+v, %v; want one object of at most 16 MiB, what earlier versions read", objs, err)
			}
			if got.SHA256 != m.SHA256 || !got.OK() {
				t.Errorf("read back %s, %s; want %s, completed", got.Status, got.SHA256, m.SHA256)
			}
			switch {
			case c.kept && (len(got.Tables) != len(c.tables) || got.Tables[0] != c.tables[0] || got.TableCountMethod != "archive" || len(got.Warnings) != 1):
				t.Errorf("read back %d tables (%q), warnings %q; want all %d, no new warning", len(got.Tables), got.TableCountMethod, got.Warnings, len(c.tables))
			case !c.kept && (got.Tables != nil || got.TableCountMethod != "" || len(got.Warnings) != 2 || !strings.HasPrefix(got.Warnings[1], "no row counts recorded: those of 120000 tables")):
				t.Errorf("read back %d tables (%q), warnings %q; want none, and a warning saying why", len(got.Tables), got.TableCountMethod, got.Warnings)
			}
			// FitManifest tells a capture what was stored, and leaves its
			// manifest alone.
			if fit := storage.FitManifest(m); !reflect.DeepEqual(fit, got) {
				t.Errorf("FitManifest: %d tables, warnings %q; stored %d tables, warnings %q", len(fit.Tables), fit.Warnings, len(got.Tables), got.Warnings)
			}
			if len(m.Tables) != len(c.tables) || len(m.Warnings) != 1 {
				t.Errorf("the caller's manifest changed: %d tables, warnings %q", len(m.Tables), m.Warnings)
			}
		})
	}

	t.Run("stored past 16 MiB by an earlier version", func(t *testing.T) {
		id := "20261125-020000-p8q2"
		b, err := json.MarshalIndent(manifest(id, tables(200_000, "tenant_000001", "order_items_2026_01")), "", "  ")
		if err != nil || len(b) <= 16<<20 {
			t.Fatalf("%d bytes, %v; the test needs over 16 MiB", len(b), err)
		}
		if _, err := st.Put(ctx, storage.ManifestKey(id), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if got, err := cat.Manifest(ctx, id); err != nil || len(got.Tables) != 200_000 {
			t.Errorf("read back %d tables, %v; want 200000", len(got.Tables), err)
		}
	})
}

// slowGets is a store whose Get takes a while, as an S3 GET does, and
// which records how many run at once.
type slowGets struct {
	*file.Store
	mu             sync.Mutex
	inFlight, most int
}

func (s *slowGets) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	time.Sleep(20 * time.Millisecond)
	return s.Store.Get(ctx, key)
}

// TestEntriesReadsManifestsConcurrently: list and every retention pass
// read each backup's manifest; one at a time, a thousand backups on S3
// took most of a minute. They are read several at once, and not without
// bound; the result is the same as one at a time.
func TestEntriesReadsManifestsConcurrently(t *testing.T) {
	ctx := context.Background()
	fs, cat := fileCatalog(t)
	start := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	for i := range 40 {
		at := start.Add(time.Duration(i) * 24 * time.Hour)
		if err := cat.WriteManifest(ctx, storage.Manifest{ID: storage.NewID(at), Status: storage.StatusFailed, StartedAt: at, FinishedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := cat.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowGets{Store: fs}
	got, err := storage.Catalog{Store: slow}.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slow.most < 2 || slow.most > 16 {
		t.Errorf("read %d manifests at most at once, want 2 to 16", slow.most)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Manifest == nil || got[i].Manifest.ID != got[i].ID {
			t.Errorf("entry %d: %s (manifest %v), want %s with its manifest", i, got[i].ID, got[i].Manifest, want[i].ID)
		}
	}

	// A context that ends while they are read ends Entries with it.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := (storage.Catalog{Store: &slowGets{Store: fs}}).Entries(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Entries with a context ending meanwhile: %v, want the deadline", err)
	}
}

// TestNewerFormatUnreadable: a backup a newer pgbackups stored another way
// (another compression, encryption or archive format) is unreadable here,
// as this version's encrypted backups should have been to the one before
// it: that one listed them completed, restored latest into a failure, and
// let retention count them in place of backups it could restore.
func TestNewerFormatUnreadable(t *testing.T) {
	ctx := context.Background()
	st, cat := fileCatalog(t)
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	old := storage.NewID(at)
	putCompleted(t, st, storage.Manifest{ID: old, StartedAt: at, FinishedAt: at.Add(time.Minute), Compression: "zstd", Format: "custom"})
	newer := storage.NewID(at.Add(24 * time.Hour))
	putCompleted(t, st, storage.Manifest{ID: newer, StartedAt: at.Add(24 * time.Hour), FinishedAt: at.Add(24*time.Hour + time.Minute), Compression: "zstd", Encryption: "age2"})
	if _, err := cat.Manifest(ctx, newer); !errors.Is(err, storage.ErrNewerFormat) || !strings.Contains(err.Error(), `encryption "age2"`) {
		t.Fatalf("manifest of a newer format: %v, want ErrNewerFormat naming it", err)
	}
	if _, err := cat.Resolve(ctx, "latest"); !errors.Is(err, storage.ErrNewerFormat) {
		t.Errorf("latest past a newer format: %v, want it to stop there", err)
	}
	// A failed one has nothing to read: passed over, as any failure.
	failedAt := at.Add(48 * time.Hour)
	failed := storage.NewID(failedAt)
	if err := cat.WriteManifest(ctx, storage.Manifest{ID: failed, Status: storage.StatusFailed, StartedAt: failedAt, FinishedAt: failedAt.Add(time.Second), Encryption: "age2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Manifest(ctx, failed); err != nil {
		t.Errorf("a failed backup of a newer format: %v, want it read", err)
	}
	res, err := storage.Prune(ctx, cat, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Now: at.Add(48 * time.Hour), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || len(res.Unreadable) != 1 || res.Unreadable[0].ID != newer {
		t.Errorf("prune removed %+v, left alone %+v: want %s left alone and %s kept", res.Removed, res.Unreadable, newer, old)
	}
}
