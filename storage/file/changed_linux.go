package file

import (
	"io/fs"
	"syscall"
	"time"
)

// lastChange is when the file was last written or put where it is: the
// later of its mtime and its ctime. cp -a, rsync -a and rclone set the
// mtime a copy had at its source, so a complete backup copied back into
// the store looked days old the moment it arrived, and prune took its data
// for a dead capture's before the manifest, copied last, was there. No copy
// can set the ctime: the kernel stamps it on every write, rename, link and
// utimensat(2) (including the one that set the old mtime).
func lastChange(info fs.FileInfo) time.Time {
	t := info.ModTime()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Unix()); c.After(t) {
			t = c
		}
	}
	return t
}
