package file

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/pgbackups/pgbackups/storage"
)

// full explains err when it says the store's file system ran out of
// something, and returns it unchanged otherwise. ENOSPC reads "no space
// left on device" whether the blocks or the inodes ran out, and `df -h`
// shows plenty of space when it was the inodes (a store of many small
// files, a volume made with few inodes); EDQUOT is a quota of the user,
// while df shows the file system's own space. So the error says which ran
// out, and how much was left, on the file system holding the store's
// root. It is called before a failed Put frees its temporary, which would
// make the space look free again.
//
// The error wraps storage.ErrNoSpace, which is what the capture branches
// on whatever the backend, and still the errno.
func (s *Store) full(err error) error {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return err
	}
	return storage.NoSpace(s.explainFull(err))
}

// explainFull adds to err, ENOSPC or EDQUOT, what ran out and how much was
// left.
func (s *Store) explainFull(err error) error {
	st, ok := statSpace(s.Root)
	if !ok {
		return err
	}
	where := "the file system holding " + s.Location("")
	switch {
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w (a disk quota of uid %d or of its group is used up on %s; the file system itself had %s free)",
			err, syscall.Getuid(), where, storage.HumanBytes(st.free))
	case st.files > 0 && st.freeFiles == 0:
		return fmt.Errorf("%w (%s had no free inodes (files) left, of %d, though %s was free: remove files, or make it with more inodes)",
			err, where, st.files, storage.HumanBytes(st.free))
	case st.free >= roomy:
		// The file system did not think itself full: what ran out is
		// under it (a thin pool, which also fails writeback with
		// ENOSPC), behind it (an NFS server's disk or quota), or space
		// df does not count (btrfs metadata).
		return fmt.Errorf("%w (%s had %s free of %s, so what ran out is not the space df shows: a thin-provisioned volume's pool, a network file system's server, or btrfs metadata)",
			err, where, storage.HumanBytes(st.free), storage.HumanBytes(st.size))
	default:
		return fmt.Errorf("%w (%s had %s free of %s)", err, where, storage.HumanBytes(st.free), storage.HumanBytes(st.size))
	}
}

// roomy is free space that a write failing with ENOSPC could not have used
// up: file systems keep a little back (ext4 for delayed allocation's
// metadata), never this much.
const roomy = 64 << 20

// space is what statSpace reports of a file system.
type space struct {
	size, free       int64  // bytes; free is what an unprivileged user may use
	files, freeFiles uint64 // inodes; files is 0 where the file system has no fixed number
}
