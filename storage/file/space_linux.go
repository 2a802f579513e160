package file

import "golang.org/x/sys/unix"

// statSpace reports the space and inodes of the file system holding p.
func statSpace(p string) (space, bool) {
	var st unix.Statfs_t
	if unix.Statfs(p, &st) != nil {
		return space{}, false
	}
	bs := int64(st.Bsize)
	return space{
		size:      int64(st.Blocks) * bs,
		free:      int64(st.Bavail) * bs,
		files:     st.Files,
		freeFiles: st.Ffree,
	}, true
}
