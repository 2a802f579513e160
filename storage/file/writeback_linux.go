package file

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a range out, without
// waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE). Errors are ignored:
// this is pacing only. Starting writeback, unlike waiting for it, consumes
// no error, so finishWriteback and the fsync before the rename report them.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// finishWriteback waits for a range's writeback and drops it from the page
// cache. Its error must fail the Put: waiting reports a writeback error
// (EIO from a failing disk, ENOSPC from a thin pool, EDQUOT from an NFS
// export) and consumes it for this open file, so the fsync before the
// rename returns 0 over a file whose blocks were never written. Linux 4.13
// made it so ("fs: convert sync_file_range to use errseq_t based error-
// tracking"); before, it cleared AS_EIO, to the same effect. ENOSYS (a
// sandbox without the call) consumed nothing and only loses the pacing.
func finishWriteback(f *os.File, off, n int64) error {
	fd := int(f.Fd())
	err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("sync_file_range: %w", err)
	}
	unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	return nil
}
