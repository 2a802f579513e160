package file

import (
	"os"

	"golang.org/x/sys/unix"
)

// alone reports whether f is the only open description of its file, by
// taking a write lease (fcntl(2) F_SETLEASE), which the kernel grants only
// then; closing f releases it. A reader (a restore streaming this backup)
// must not see the file shrink under it.
func alone(f *os.File) bool {
	_, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK)
	return err == nil
}
