package dump_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestCaptureExplainsLockTableFull: pg_dump locks every table it dumps,
// so on a database of many tables (a schema per tenant, thousands of
// partitions) the server's lock table runs out: "out of shared memory".
// The error says why, with the server's numbers, what to set and that a
// restart is needed (a retry alone fails the same way).
func TestCaptureExplainsLockTableFull(t *testing.T) {
	pg := testenv.NewCluster(t, "max_connections = 20", "max_locks_per_transaction = 10")
	db := pg.CreateDB(t)
	// A thousand tables overflow 10 x 20 locks and the shared memory's
	// slack; created in batches, or creating them would run out first.
	pg.Exec(t, db, `DO $$ BEGIN
  FOR i IN 1..1000 LOOP
    EXECUTE format('CREATE TABLE t%s ()', i);
    IF i % 200 = 0 THEN COMMIT; END IF;
  END LOOP; END $$`)
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = dump.Capture(context.Background(), options(t, pg, db, st))
	if err == nil {
		t.Fatal("capture of 1000 tables with max_locks_per_transaction = 10 succeeded; want the lock table to run out")
	}
	t.Log(err)
	for _, want := range []string{
		"out of shared memory", // the server's own words stay
		"pg_dump holds a lock on every table",
		"10 x (20 + 0) = 200 locks",
		"1000 tables",
		"set max_locks_per_transaction = 128 or more",
		"restart the server",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("capture error lacks %q:\n%v", want, err)
		}
	}
}
