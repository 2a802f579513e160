package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestServesWhileReadingStorage: reading the last outcome from storage at
// start-up can take up to latestTimeout (a slow or wedged endpoint). The
// probes are answered meanwhile, /livez alive and /healthz "starting",
// instead of connections refused that a startup probe counts as failures;
// once the read is done, /healthz judges from what it found.
func TestServesWhileReadingStorage(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	reading, release := make(chan struct{}), make(chan struct{})
	d, logs := newDaemon(t, Options{
		HTTPAddr: "127.0.0.1:0",
		Schedule: mustParse(t, "02:00 UTC"),
		Capture: func(ctx context.Context, _ *atomic.Int64) (storage.Manifest, error) {
			<-ctx.Done() // not due in this test
			return storage.Manifest{}, ctx.Err()
		},
		Latest: func(ctx context.Context) (storage.Manifest, *storage.Manifest, error) {
			close(reading)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return manifest("20260310-020000-prev", time.Date(2026, 3, 10, 2, 1, 0, 0, time.UTC), time.Minute), nil, nil
		},
		HealthGrace: time.Hour,
		Now:         clock.Now,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	select {
	case <-reading:
	case <-time.After(5 * time.Second):
		t.Fatalf("the daemon did not read storage at start-up\n%s", logs)
	}
	base := "http://" + servingAddr(t, logs)
	get := func(path string) (int, map[string]any) {
		t.Helper()
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s while storage is read: %v", path, err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := get("/livez"); code != 200 {
		t.Errorf("/livez while storage is read: %d %v", code, body)
	}
	if code, body := get("/healthz"); code != 503 || body["status"] != StatusStarting {
		t.Errorf("/healthz while storage is read: %d %v, want 503 %q", code, body, StatusStarting)
	}
	close(release)
	// The read ends with the success recorded, then loading off: poll for
	// the verdict.
	var code int
	var body map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if code, body = get("/healthz"); body["status"] != StatusStarting {
			break
		}
	}
	if code != 200 || body["status"] != StatusOK {
		t.Errorf("/healthz after storage was read: %d %v", code, body)
	}
}
