package file

import (
	"fmt"
	"os"
)

// writebackChunk is how much of a file being written may sit dirty in the
// page cache before its writeback is started.
const writebackChunk = 8 << 20

// writebackWriter writes to f and, every writebackChunk bytes, starts the
// kernel writing that chunk out, waits for the chunk before it, and drops
// it from the page cache. Without it a multi-GB backup piles up dirty pages
// until the final fsync flushes them at once, and every commit on the same
// disk waits behind that flush: bench/nostall.sh measured the stored file's
// final fsync as the largest single cause of application latency during a
// backup to a local directory. Dropping written pages also keeps the backup
// from evicting the database's cache.
//
// A chunk whose writeback failed fails the writer, for good: waiting on
// the chunk reports the error once and consumes it (see finishWriteback),
// so the fsync before the rename would not report it again.
type writebackWriter struct {
	f                *os.File
	finish           func(f *os.File, off, n int64) error // finishWriteback, or a test's
	err              error                                // the writeback error, once there is one
	off              int64                                // bytes written
	started          int64                                // writeback started up to here
	prevOff, prevLen int64                                // the chunk whose writeback was started last
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.off += int64(n)
	if err == nil && w.off-w.started >= writebackChunk {
		off, length := w.started, w.off-w.started
		startWriteback(w.f, off, length)
		if w.prevLen > 0 {
			if err := w.finish(w.f, w.prevOff, w.prevLen); err != nil {
				w.err = fmt.Errorf("writeback: %w", err)
				return n, w.err
			}
		}
		w.prevOff, w.prevLen, w.started = off, length, w.off
	}
	return n, err
}
