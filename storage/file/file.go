// Package file is the local-directory storage backend, the embedded default.
package file

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

var (
	_ storage.Store     = (*Store)(nil)
	_ storage.Describer = (*Store)(nil)
)

// tmpPrefix marks files being written. List never shows them, and a crash
// leaves them for prune to collect, never as a visible object.
const tmpPrefix = ".tmp-"

// Store keeps objects as files under Root. A Put writes a hidden temporary
// file in the destination directory, fsyncs it, and renames it into place,
// so a key is either absent or complete.
type Store struct {
	// Root is the directory with every symlink resolved (New and Open do
	// it): filepath.WalkDir does not descend into a root that is a symlink,
	// so List and Temporaries would find nothing. Under systemd with
	// DynamicUser= the StateDirectory is one, /var/lib/pgbackups ->
	// private/pgbackups (man systemd.exec), and so is many a hand-made
	// /backups -> /mnt/nas/backups.
	Root string
	// given is the directory as the caller named it, for Location and
	// messages: the path the operator configured, not systemd's private one.
	given string
	// finishWriteback, when set, stands in for the package's: tests inject
	// writeback errors with it.
	finishWriteback func(f *os.File, off, n int64) error
	// renameFile, when set, stands in for os.Rename in Delete: tests
	// inject the errors of a full file system with it.
	renameFile func(oldpath, newpath string) error
}

func (s *Store) rename(oldpath, newpath string) error {
	if s.renameFile != nil {
		return s.renameFile(oldpath, newpath)
	}
	return os.Rename(oldpath, newpath)
}

// New returns a Store rooted at dir, creating it (0700: backups hold all of
// the database) if it does not exist. See Exposed for an existing dir that
// every user may write to.
func New(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file: %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		_, serr := os.Stat(abs)
		if target, lerr := os.Readlink(abs); lerr == nil && errors.Is(serr, fs.ErrNotExist) {
			// MkdirAll says only "file exists" of a dangling symlink.
			return nil, fmt.Errorf("file: %s is a symlink to %s, which does not exist: create it, or point the store elsewhere", abs, target)
		}
		return nil, fmt.Errorf("file: create %s: %w", abs, err)
	}
	return resolved(abs)
}

// Exposed reports a root every user may write to (0777 and no sticky bit:
// a shared directory's usual mistake, a volume someone chmod-ed 777), nil
// otherwise. Each backup's own folder is 0700 and its files 0600, so nobody
// else reads them; but in such a root anyone may rename a backup's folder
// away, put a folder or a symlink of theirs in its place and have the rest
// of the backup (its manifest, globals) written there, delete backups, or
// plant one a restore would run. With the sticky bit (as /tmp) only their
// owner can rename or remove entries, which leaves nothing to exploit. It is
// a warning, not a refusal: a backup not taken is worse.
func (s *Store) Exposed() error {
	fi, err := os.Stat(s.Root)
	if err != nil {
		return fmt.Errorf("file: %s: %w", s.given, err)
	}
	if perm := fi.Mode(); perm&0o002 != 0 && perm&fs.ModeSticky == 0 {
		return fmt.Errorf("file: %s is writable by every user (mode %04o): anyone could delete or replace backups there; restrict it (chmod 0700 %s) or store elsewhere",
			s.given, perm.Perm(), s.given)
	}
	return nil
}

// resolved returns a Store for the existing directory abs.
func resolved(abs string) (*Store, error) {
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("file: %s: %w", abs, err)
	}
	return &Store{Root: root, given: abs}, nil
}

// Open returns a Store rooted at dir, which must exist: for commands that
// read backups, where a mistyped path must not look like an empty store.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file: %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file: %s does not exist: no backup was ever stored there (a mistyped path?)", abs)
	}
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("file: %s is not a directory", abs)
	}
	return resolved(abs)
}

// path maps a key to a file, refusing keys that would escape Root.
func (s *Store) path(key string) (string, error) {
	clean := filepath.Clean("/" + key)
	if key == "" || clean == "/" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || clean != "/"+key {
		return "", fmt.Errorf("file: invalid key %q", key)
	}
	for _, part := range strings.Split(clean, "/") {
		if strings.HasPrefix(part, tmpPrefix) {
			return "", fmt.Errorf("file: invalid key %q", key)
		}
	}
	return filepath.Join(s.Root, filepath.FromSlash(clean)), nil
}

// Put implements storage.Store. An error saying the file system is full
// (or a quota used up) says which ran out, space or inodes, and how much
// was left (see full).
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (n int64, err error) {
	dst, err := s.path(key)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, s.full(fmt.Errorf("file: put %s: %w", key, err))
	}
	// A Put that fails leaves no empty folder behind either: a full file
	// system fails every retry of a backup, each with a new id, and even
	// its failed manifest may not fit, which would leave an empty folder
	// per attempt that nothing lists or prunes.
	f, err := os.CreateTemp(filepath.Dir(dst), tmpPrefix+filepath.Base(dst)+"-*")
	if err != nil {
		err = s.full(fmt.Errorf("file: put %s: %w", key, err))
		s.removeEmptyParents(dst)
		return 0, err
	}
	committed := false
	defer func() {
		if !committed {
			// What was left, before the temporary is freed.
			err = s.full(err)
			f.Close()
			dropFailed(ctx, f.Name())
			s.removeEmptyParents(dst)
		}
	}()
	wb := &writebackWriter{f: f, finish: finishWriteback}
	if s.finishWriteback != nil {
		wb.finish = s.finishWriteback
	}
	n, err = io.Copy(wb, ctxReader{ctx, r})
	if err != nil {
		return n, fmt.Errorf("file: put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("file: put %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("file: put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return n, fmt.Errorf("file: put %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return n, fmt.Errorf("file: put %s: %w", key, err)
	}
	committed = true
	// The rename is durable only once the directory entry is on disk.
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}

// failedCleanupTime bounds how long a failed Put frees its temporary
// gently (about 2 GiB at removeGently's pace) before unlinking the rest at
// once: a failed or cancelled backup (a watchdog abort, a shutdown) should
// not stall the database's commits with its partial file any more than a
// pruned backup does, nor hold up a shutdown for long.
const failedCleanupTime = 5 * time.Second

// dropFailed removes the temporary of a Put that did not commit. It runs
// even when ctx has ended (which is often why the Put failed).
func dropFailed(ctx context.Context, tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failedCleanupTime)
	defer cancel()
	removeGently(ctx, tmp)
}

// ctxReader stops a copy when ctx ends, so a cancelled Put never commits.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file: get %s: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("file: get %s: %w", key, err)
	}
	return f, nil
}

// List implements storage.Store. A prefix with a slash is looked up in its
// folder only. An object's Modified is when it was last written or put in
// place (lastChange), not the mtime a copy may have carried over: prune
// and delete judge by it whether a capture may still be writing a backup.
func (s *Store) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	start := s.Root
	if i := strings.LastIndex(prefix, "/"); i > 0 && filepath.IsLocal(filepath.FromSlash(prefix[:i])) {
		start = filepath.Join(s.Root, filepath.FromSlash(prefix[:i]))
		if _, err := os.Lstat(start); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	var objs []storage.Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return s.walkError(p, d, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.Root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			// An object moved elsewhere and linked back (a big dump on
			// another disk): its size is what Get reads, the target's. A
			// dangling link keeps the link's own, and shows as damage.
			target, err := os.Stat(p)
			if err == nil && target.IsDir() {
				return nil // a folder, not an object (WalkDir does not enter it)
			}
			if err == nil {
				info = target
			}
		}
		objs = append(objs, storage.Object{Key: key, Size: info.Size(), Modified: lastChange(info)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file: list %s: %w", s.Location(""), err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// Delete implements storage.Store. Directories left empty are removed.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	// The key disappears at once; its blocks are freed gently under a
	// temporary name, which prune collects should this process die first.
	tmp := filepath.Join(filepath.Dir(p), tmpPrefix+filepath.Base(p)+"-deleting")
	err = s.rename(p, tmp)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// The rename needs room the full file system does not have (a
		// copy-on-write one such as btrfs or ZFS writes new metadata for
		// it; ext4 a new directory block), and deleting is how an operator
		// or retention makes room: unlink at once instead, ungently.
		err = os.Remove(p)
		if err == nil {
			s.removeEmptyParents(p)
			return nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file: delete %s: %w", key, storage.ErrNotFound)
	} else if err != nil {
		return s.full(fmt.Errorf("file: delete %s: %w", key, err))
	}
	if err := removeGently(ctx, tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file: delete %s: %w", key, err)
	}
	s.removeEmptyParents(p)
	return nil
}

// walkError is what a walk of the store does with an error at p: the
// root's own error ends it, and so does a backup's folder that cannot be
// read (skipping it would hide the backup from list and retention). An
// entry removed while the walk ran (a delete beside it) is passed over, and
// so is a folder pgbackups did not make and may not read: lost+found at the
// root of a mounted volume, owned by root, must not stop every backup.
func (s *Store) walkError(p string, d fs.DirEntry, err error) error {
	switch {
	case p == s.Root || d == nil:
		return err
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, fs.ErrPermission) && d.IsDir() && !storage.ValidID(d.Name()):
		return fs.SkipDir
	}
	return err
}

// Location implements storage.Describer. It names the directory as it was
// given to New or Open.
func (s *Store) Location(key string) string {
	dir := cmp.Or(s.given, s.Root)
	if key == "" {
		return dir
	}
	return filepath.Join(dir, filepath.FromSlash(key))
}

// Temporaries lists unfinished writes (a crash mid-Put), for prune, each
// Modified as List's.
func (s *Store) Temporaries(context.Context) ([]storage.Object, error) {
	var objs []storage.Object
	err := filepath.WalkDir(s.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return s.walkError(p, d, err)
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, _ := filepath.Rel(s.Root, p)
		key := filepath.ToSlash(rel)
		if !ownTemporary(key) {
			return nil // another program's, or another location's nested here
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		objs = append(objs, storage.Object{Key: key, Size: info.Size(), Modified: lastChange(info)})
		return nil
	})
	return objs, err
}
