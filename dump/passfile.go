package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A passfile (or service file) hands a secret to a libpq child (see
// Conn.forChild) and is removed when the child is done; so is the archive
// `restore --jobs` decompresses into $TMPDIR, which can be as large as the
// dump. Two exits skip that: a second signal (main.go exits at once) and a
// crash or SIGKILL. Each such file is named after the pid that wrote it, so
// the first can remove this process's own on the way out, and the next start
// can remove those of processes that are gone. The pid alone cannot say
// that where $TMPDIR is shared with another PID namespace (two containers
// mounting one volume, each with its own pid 1), so each file is also
// locked (flock) by its process while in use, and a locked file is never
// removed.

const (
	passfilePrefix = "pgbackups-pgpass-"
	restorePrefix  = "pgbackups-restore-"
)

var tempPrefixes = []string{passfilePrefix, restorePrefix}

// processStart is about when this process started (package initialization),
// a little after any file it can have written.
var processStart = time.Now()

// createPassfile creates an empty 0600 passfile in dir, named for this
// process and locked until removeTemp.
func createPassfile(dir string) (*os.File, error) {
	return createLocked(dir, fmt.Sprintf("%s%d-*", passfilePrefix, os.Getpid()))
}

// createRestoreTemp creates the temporary archive of a parallel restore of
// backup id in dir, named for this process and locked until removeTemp.
func createRestoreTemp(dir, id string) (*os.File, error) {
	return createLocked(dir, fmt.Sprintf("%s%d-%s-*.dump", restorePrefix, os.Getpid(), id))
}

// locks holds, by file name, the descriptors whose flock marks this
// process's temporary files as in use.
var locks sync.Map

// creatingPrefix names a temporary file before it is locked: the sweep
// does not look at it, so it never sees the file unlocked.
const creatingPrefix = ".creating-"

// createLocked creates a 0600 file in dir named after pattern (as
// os.CreateTemp), holding a shared flock on it until removeTemp. The lock
// is on a descriptor of its own, so the caller may close the returned file.
//
// Everything goes through the descriptor os.CreateTemp opened (O_EXCL):
// the file is never opened again by name. $TMPDIR may be a directory other
// users can write to, and without the sticky bit (or as root, which the
// sticky bit does not stop) one of them could put a symlink at the final
// name between the rename and a reopen, and have the password or the whole
// restore archive written into a file of theirs.
func createLocked(dir, pattern string) (*os.File, error) {
	tmp, err := os.CreateTemp(dir, creatingPrefix+pattern)
	if err != nil {
		return nil, err
	}
	name := filepath.Join(filepath.Dir(tmp.Name()), strings.TrimPrefix(filepath.Base(tmp.Name()), creatingPrefix))
	// A duplicate descriptor shares the open file, and so the flock, which
	// lasts until both are closed.
	lock, err := dupFile(tmp, tmp.Name())
	if err == nil {
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
			lock.Close()
		}
	}
	if err == nil {
		if err = os.Rename(tmp.Name(), name); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	afterRename(name)
	locks.Store(name, lock)
	// tmp is named as it was created: hand the caller the same open file
	// under the name it has now, for the child's environment and removeTemp.
	defer tmp.Close()
	f, err := dupFile(tmp, name)
	if err != nil {
		removeTemp(name)
		return nil, err
	}
	return f, nil
}

// afterRename is called between a temporary file's rename and its use;
// tests swap the name there.
var afterRename = func(string) {}

// dupFile returns a new descriptor, called name, for f's open file.
func dupFile(f *os.File, name string) (*os.File, error) {
	// F_DUPFD_CLOEXEC: close-on-exec from the start, so a child forked
	// by another goroutine meanwhile cannot inherit the secret file.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// removeTemp removes a file createLocked made, and drops its lock.
func removeTemp(name string) {
	os.Remove(name)
	if lock, ok := locks.LoadAndDelete(name); ok {
		lock.(*os.File).Close()
	}
}

// inUse reports whether some process holds a lock on the temporary file p,
// or it cannot be looked at (another user's: not ours to remove).
func inUse(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	defer f.Close() // drops the lock taken here
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
}

// tempFilePID is the pid in the name of a passfile or restore archive, or 0
// when name is neither.
func tempFilePID(name string) int {
	var rest string
	ok := false
	for _, p := range tempPrefixes {
		if rest, ok = strings.CutPrefix(name, p); ok {
			break
		}
	}
	if !ok {
		return 0
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(pid)
	// Linux pids stop at 2^22 (PID_MAX_LIMIT). The bound also keeps older
	// builds' restore archives (pgbackups-restore-<backup id>-..., no pid)
	// from being read as the file of pid 20261125, which is gone.
	if err != nil || n <= 0 || n > 1<<22 {
		return 0
	}
	return n
}

// tempFiles lists the passfiles and restore archives in the temporary
// directory, where every one is written, whose names start with lead (""
// for named ones, creatingPrefix for ones not yet named).
func tempFiles(lead string) []string {
	var out []string
	for _, p := range tempPrefixes {
		names, _ := filepath.Glob(filepath.Join(os.TempDir(), lead+p+"*"))
		out = append(out, names...)
	}
	return out
}

// RemoveTempFiles removes this process's passfiles and restore archives,
// for an exit that skips deferred calls. A child that has not connected yet
// then fails to; one that has is unaffected.
func RemoveTempFiles() {
	// The names this process made, not every name carrying its pid: where
	// TMPDIR is shared across PID namespaces, another container's pid 1
	// writes names like ours.
	locks.Range(func(name, _ any) bool {
		os.Remove(name.(string))
		return true
	})
}

// SweepStaleTempFiles removes the passfiles and restore archives of
// pgbackups processes that no longer exist (killed, crashed, or exited on a
// second signal before RemoveTempFiles) and returns how many it removed. A
// file that is locked, whose pid is alive, or that belongs to a process we
// may not signal, is left alone: it may be in use.
//
// A file named for this very pid is stale too when it is older than this
// process: in a container, pgbackups is often pid 1 again after a restart
// that kept the file system.
func SweepStaleTempFiles() int {
	n := 0
	for _, p := range tempFiles("") {
		pid := tempFilePID(filepath.Base(p))
		if pid == 0 || inUse(p) {
			continue
		}
		if pid == os.Getpid() {
			if info, err := os.Stat(p); err == nil && info.ModTime().Before(processStart) && os.Remove(p) == nil {
				n++
			}
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if os.Remove(p) == nil {
				n++
			}
		}
	}
	// A process that died between creating a file and naming it left it
	// empty under its first name; a minute is ample for the rename.
	for _, p := range tempFiles(creatingPrefix) {
		if info, err := os.Stat(p); err == nil && time.Since(info.ModTime()) > time.Minute && !inUse(p) && os.Remove(p) == nil {
			n++
		}
	}
	return n
}
