package dump

import (
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestRestoreJobsTmpdirFull: a parallel restore whose temporary archive
// does not fit in TMPDIR says where it was written, how much it needs and
// what to do, and changes nothing.
func TestRestoreJobsTmpdirFull(t *testing.T) {
	tmp := t.TempDir()
	if err := unix.Mount("tmpfs", tmp, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mount a tmpfs: %v (needs root)", err)
	}
	t.Cleanup(func() { unix.Unmount(tmp, unix.MNT_DETACH) })
	pg := testenv.PG(t)
	ctx := context.Background()
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 2000) // a ~0.6 MB archive
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := captureInto(t, pg, src, st, true)
	target := pg.CreateDB(t)
	_, err = Restore(ctx, RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Jobs: 2, TempDir: tmp})
	for _, want := range []string{"no space left on device", "needs " + config.HumanBytes(m.DumpBytes), "in " + tmp, "TMPDIR", "without --jobs", "nothing was changed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore --jobs into a full TMPDIR: error lacks %q: %v", want, err)
		}
	}
	if n := pg.QueryString(t, target, `SELECT count(*)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace`); n != "0" {
		t.Errorf("the target holds %s relations", n)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("TMPDIR holds %v", left)
	}
}

// TestPassfileNamesTmpdir: a child's passfile that cannot be written
// names the directory, and TMPDIR, which decides it.
func TestPassfileNamesTmpdir(t *testing.T) {
	missing := t.TempDir() + "/gone"
	_, err := conn(t, "postgres://app:s3cret@127.0.0.1:5432/app").forChild(missing)
	if err == nil || !strings.Contains(err.Error(), missing+" (TMPDIR)") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("passfile in a missing directory: %v, want an error naming %s (TMPDIR) without the password", err, missing)
	}
}
