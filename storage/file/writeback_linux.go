package file

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a range out, without
// waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE). Errors are ignored:
// this is pacing only; the fsync before the rename is what makes the data
// durable and reports errors.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// finishWriteback waits for a range's writeback and drops it from the page
// cache.
func finishWriteback(f *os.File, off, n int64) {
	fd := int(f.Fd())
	unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}
