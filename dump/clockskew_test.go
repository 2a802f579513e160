package dump_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureWarnsOfClockSkew: a capture whose clock (which stamps the
// backup's id and times) is far from the database server's says so in the
// log and the manifest; one in step with it says nothing.
func TestCaptureWarnsOfClockSkew(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t (a int)")
	for _, tc := range []struct {
		name   string
		offset time.Duration
		want   string
	}{
		{"in step", 0, ""},
		{"20s ahead", 20 * time.Second, ""},
		{"an hour ahead", time.Hour, "this host's clock is 1h0m0s ahead of the database server's"},
		{"5 minutes behind", -5 * time.Minute, "this host's clock is 5m0s behind the database server's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, pg, db, fileStore(t))
			o.Now = func() time.Time { return time.Now().Add(tc.offset) }
			m, err := dump.Capture(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(m.Warnings, "\n")
			if tc.want == "" && strings.Contains(got, "clock") || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("manifest warnings %q, want %q", got, tc.want)
			}
		})
	}
}
