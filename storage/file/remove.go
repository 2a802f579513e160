package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Freeing a big file's blocks at once stalls every fsync on its disk: ext4
// frees them (and, mounted with -o discard, TRIMs them) in one journal
// commit, and the commits of a database on the same disk wait behind it.
// bench/delete.sh measures it with pgbench beside the unlink of a 320 MiB
// backup (bench/results-delete.md). So a file bigger than shrinkStep is
// shrunk a step at a time, shrinkPause apart, before it is unlinked, like
// RocksDB's DeleteScheduler: about 400 MiB/s, 25 s for a 10 GiB backup,
// in the background of prune.
const (
	shrinkStep  = 8 << 20
	shrinkPause = 20 * time.Millisecond
)

// removeGently unlinks the file at p, which must not be a key's visible
// name while it shrinks (Delete renames it to a temporary first): a crash
// part-way must not leave a truncated backup behind. A file someone still
// has open (a restore reading it) is not shrunk but unlinked at once, so
// the reader keeps every byte. If ctx ends, the rest is unlinked at once.
//
// Only a regular file at p itself is shrunk: a symlink in a backup's
// folder (someone moved a big dump elsewhere and linked it back) is
// unlinked, and what it points to, outside the backup, left whole.
func removeGently(ctx context.Context, p string) error {
	if at, err := os.Lstat(p); err == nil && at.Mode().IsRegular() && at.Size() > shrinkStep {
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			// The same file still: not one swapped in since the Lstat.
			if info, err := f.Stat(); err == nil && os.SameFile(at, info) && alone(f) {
				shrink(ctx, f, info.Size())
			}
			f.Close()
		}
	}
	return os.Remove(p)
}

// shrink truncates f from size down by shrinkStep, shrinkPause apart.
func shrink(ctx context.Context, f *os.File, size int64) {
	t := time.NewTicker(shrinkPause)
	defer t.Stop()
	for size -= shrinkStep; size > 0; size -= shrinkStep {
		if f.Truncate(size) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// removeEmptyParents removes the directories above p, up to Root, that
// are now empty, so deletes leave no empty directory behind.
func (s *Store) removeEmptyParents(p string) {
	for dir := filepath.Dir(p); dir != s.Root && strings.HasPrefix(dir, s.Root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty, or gone: stop climbing
			break
		}
	}
}
