package dump

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A passfile hands a password to a libpq child (see Conn.forChild) and is
// removed when the child is done. Two exits skip that: a second signal
// (main.go exits at once) and a crash or SIGKILL. Each passfile is named
// after the pid that wrote it, so the first can remove this process's own
// on the way out, and the next start can remove those of processes that
// are gone.

const passfilePrefix = "pgbackups-pgpass-"

// createPassfile creates an empty 0600 passfile in dir, named for this
// process.
func createPassfile(dir string) (*os.File, error) {
	return os.CreateTemp(dir, fmt.Sprintf("%s%d-*", passfilePrefix, os.Getpid()))
}

// passfilePID is the pid in a passfile's name, or 0 when name is not one.
func passfilePID(name string) int {
	rest, ok := strings.CutPrefix(name, passfilePrefix)
	if !ok {
		return 0
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// passfiles lists the passfiles in the temporary directory, where every
// child's passfile is written.
func passfiles() []string {
	names, _ := filepath.Glob(filepath.Join(os.TempDir(), passfilePrefix+"*"))
	return names
}

// RemovePassfiles removes this process's passfiles, for an exit that skips
// deferred calls. A child that has not connected yet then fails to; one
// that has is unaffected.
func RemovePassfiles() {
	for _, p := range passfiles() {
		if passfilePID(filepath.Base(p)) == os.Getpid() {
			os.Remove(p)
		}
	}
}

// SweepStalePassfiles removes the passfiles of pgbackups processes that no
// longer exist (killed, crashed, or exited on a second signal before
// RemovePassfiles) and returns how many it removed. A file whose pid is
// alive, or belongs to a process we may not signal, is left alone: it may
// be in use.
func SweepStalePassfiles() int {
	n := 0
	for _, p := range passfiles() {
		pid := passfilePID(filepath.Base(p))
		if pid == 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if os.Remove(p) == nil {
				n++
			}
		}
	}
	return n
}
