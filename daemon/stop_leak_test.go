package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestRunLeavesNoConnections: a Run that sent webhooks and pings returns
// without leaving their keep-alive connections open (two goroutines and a
// descriptor each on the client side, one more goroutine on the server's),
// so a process, or a test, that runs the daemon more than once does not
// pile them up.
func TestRunLeavesNoConnections(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hits.Add(1)
	}))
	defer srv.Close()
	before := runtime.NumGoroutine()

	d, err := New(Options{
		Schedule: mustParse(t, "* * * * * *"),
		Capture: func(ctx context.Context, _ *atomic.Int64) (storage.Manifest, error) {
			now := time.Now()
			return storage.Manifest{ID: storage.NewID(now), Status: storage.StatusCompleted, StartedAt: now, FinishedAt: now}, nil
		},
		WebhookURL: srv.URL + "/hook",
		PingURL:    srv.URL + "/ping",
		Retry:      Retry{Max: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// A start ping, a success ping and the webhook: both senders have
	// used a connection.
	deadline := time.Now().Add(10 * time.Second)
	for hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications in 10s, want 3", hits.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var after int
	deadline = time.Now().Add(3 * time.Second)
	for after = runtime.NumGoroutine(); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if after > before {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines before Run, %d after it returned:\n%s", before, after, b.String())
	}
}
