package dump_test

import (
	"context"
	"io"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureReadsMegabytes: pg_dump's output is taken up to a megabyte at
// a time (a grown pipe, read through a buffer), not the default pipe's 64
// KiB per wake-up, which cost a throttled capture 40% more CPU.
func TestCaptureReadsMegabytes(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
	o := options(t, pg, db, fileStore(t))
	dump.NewNoStall(dump.NoStallOptions{MaxRate: 16 << 20}).Apply(&o)
	limited := o.Throttle
	largest := 0
	o.Throttle = func(r io.Reader) io.Reader {
		r = limited(r)
		return readerFunc(func(p []byte) (int, error) {
			n, err := r.Read(p)
			largest = max(largest, n)
			return n, err
		})
	}
	if _, err := dump.Capture(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	// 16 MiB/s lets 800 KiB through per read, and pg_dump runs ahead of
	// it. Without the grown pipe a read gets at most 64 KiB; without the
	// buffer, at most what the zstd encoder asks for (a 128 KiB block).
	if largest <= 256<<10 {
		t.Errorf("the largest read of pg_dump's output was %d bytes, want more than 256 KiB", largest)
	}
}
