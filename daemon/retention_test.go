package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestRetentionLeftAloneGauge: backups retention neither deletes nor
// counts as good (an unreadable manifest, a data object missing or cut)
// take space for ever unless someone looks: the count is a gauge an alert
// can watch. A pass that fails before it could tell keeps the last count.
func TestRetentionLeftAloneGauge(t *testing.T) {
	tick := time.Date(2026, 3, 1, 0, 0, 0, 4e6, time.UTC)
	now := runningClock(tick)
	type pass struct {
		removed, alone int
		err            error
	}
	var next atomic.Pointer[pass]
	d, _ := newDaemon(t, Options{
		Schedule: mustParse(t, "0 0 * * *"),
		Capture: func(context.Context, *atomic.Int64) (storage.Manifest, error) {
			return manifest("20260301-000000-good", now(), 10*time.Millisecond), nil
		},
		Prune: func(context.Context) (int, int, error) {
			p := next.Load()
			return p.removed, p.alone, p.err
		},
		Lock: &heldLock{heldFor: -1},
		Now:  now,
	})
	ctx := context.Background()
	for _, c := range []struct {
		pass
		want float64
	}{
		{pass{removed: 1, alone: 2}, 2},
		{pass{err: errors.New("list: connection reset")}, 2}, // unknown: the last count stands
		{pass{}, 0},
	} {
		next.Store(&c.pass)
		d.runScheduled(ctx, ctx, tick)
		if got := scrape(t, d.Handler())["pgbackups_retention_left_alone"]; got != c.want {
			t.Errorf("after a pass that left %d alone (err %v): gauge %v, want %v", c.alone, c.err, got, c.want)
		}
	}
}
