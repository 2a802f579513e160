package dump_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestMonitorsLogThroughCapture: the no-stall monitors' lines carry what
// the capture's caller put on its logger (the daemon's attempt) besides
// the backup's id, though the monitors were built once, with a logger of
// their own, for every backup.
func TestMonitorsLogThroughCapture(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 20_000)
	o := options(t, pg, db, fileStore(t))
	capLog, capLines := newLog()
	o.Logger = capLog.With("attempt", 2)
	nsLog, nsLines := newLog()
	// ~4 MB at 1 MiB/s: the backend monitor finds pg_dump's backend.
	dump.NewNoStall(dump.NoStallOptions{BackendNice: 7, MaxRate: 1 << 20, Logger: nsLog}).Apply(&o)
	m, err := dump.Capture(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	lines := capLines.lines("the dump's server backend")
	if len(lines) == 0 {
		t.Fatalf("the backend monitor logged nothing through the capture's logger; its own logger got:\n%s\nthe capture's:\n%s", nsLines, capLines)
	}
	for _, l := range lines {
		for _, want := range []string{`"attempt":2`, `"backup":"` + m.ID + `"`, `"database":"` + m.Database + `"`, `"monitor":"backend_priority"`} {
			if !strings.Contains(l, want) {
				t.Errorf("backend monitor line without %s: %s", want, l)
			}
		}
		if n := strings.Count(l, `"backup":`); n != 1 {
			t.Errorf("backend monitor line with %d backup attributes: %s", n, l)
		}
	}
	if got := nsLines.lines("the dump's server backend"); len(got) > 0 {
		t.Errorf("the monitor also logged through its own logger:\n%s", strings.Join(got, "\n"))
	}
}
