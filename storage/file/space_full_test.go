package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/storage"
)

// tinyTmpfs mounts a tmpfs with the given options on a new directory and
// returns it; it is unmounted at the end of the test. Mounting needs root
// (CAP_SYS_ADMIN): elsewhere the test is skipped.
func tinyTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("mount a tmpfs (%s): %v (needs root)", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// assertNothingLeft fails if the store holds anything but want: no object,
// temporary or folder of a failed Put.
func assertNothingLeft(t *testing.T, st *Store, want ...string) {
	t.Helper()
	var got []string
	filepath.WalkDir(st.Root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != st.Root {
			rel, _ := filepath.Rel(st.Root, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("store holds %q, want %q", got, want)
	}
}

// TestPutOnFullFileSystem: a Put that runs out of space, as a backup into
// a full volume does, fails with ENOSPC naming the store and how much is
// left, and leaves nothing behind: no temporary, no half object, and no
// folder it made (a full volume fails every retry, each a new backup id).
// A manifest that no longer fits after its data did is absent, not half
// written, and the data stays whole.
func TestPutOnFullFileSystem(t *testing.T) {
	ctx := context.Background()
	dir := tinyTmpfs(t, "size=256k")
	st, err := New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}

	id := "20261207-020000-full"
	_, err = st.Put(ctx, storage.DataKey(id), bytes.NewReader(make([]byte, 1<<20)))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put of 1 MiB into 256 KiB = %v; want ENOSPC", err)
	}
	for _, want := range []string{storage.DataKey(id), "the file system holding " + st.Location("") + " had 0 B free of 256.0 KiB)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	assertNothingLeft(t, st)

	// Data that just fits, then a manifest that does not.
	id = "20261207-030000-full"
	free, ok := statSpace(st.Root)
	if !ok {
		t.Fatal("statfs")
	}
	data := bytes.Repeat([]byte("d"), int(free.free))
	if n, err := st.Put(ctx, storage.DataKey(id), bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("Put of the %d bytes free = %d, %v", len(data), n, err)
	}
	_, err = st.Put(ctx, storage.ManifestKey(id), strings.NewReader(`{"id":"`+id+`"}`))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "had 0 B free of 256.0 KiB") {
		t.Fatalf("manifest Put on a full file system = %v; want ENOSPC saying 0 B is free", err)
	}
	if _, err := st.Get(ctx, storage.ManifestKey(id)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get of the manifest that did not fit: %v; want ErrNotFound", err)
	}
	rc, err := st.Get(ctx, storage.DataKey(id))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("data object holds %d bytes after the failed manifest, want its %d", len(got), len(data))
	}
	assertNothingLeft(t, st, id, storage.DataKey(id))

	// Deleting it makes room again.
	if err := st.Delete(ctx, storage.DataKey(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, storage.ManifestKey(id), strings.NewReader("{}")); err != nil {
		t.Fatalf("Put after the delete: %v", err)
	}
}

// TestPutOutOfInodes: ENOSPC also means the file system has no inodes
// left, while df -h shows plenty of space; the error must say which.
func TestPutOutOfInodes(t *testing.T) {
	ctx := context.Background()
	dir := tinyTmpfs(t, "size=4m,nr_inodes=8")
	st, err := New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	// Use up the inodes with backups' folders.
	var made []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("20261207-02%04d-fill", i)
		if err := os.Mkdir(filepath.Join(st.Root, name), 0o700); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		made = append(made, name)
	}
	key := storage.ManifestKey(made[0])
	_, err = st.Put(ctx, key, strings.NewReader("{}"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put with no inode left = %v; want ENOSPC", err)
	}
	for _, want := range []string{key, "the file system holding " + st.Location("") + " had no free inodes (files) left, of 8, though 4.0 MiB was free"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Nothing is left of the Put; its folder, empty, goes as Delete's would.
	assertNothingLeft(t, st, made[1:]...)
}

// TestFullExplainsQuotaAndThinPool: EDQUOT is the user's quota, not the file
// system's space (which df shows), and ENOSPC where the file system has
// room is something beneath it: the error says so.
func TestFullExplainsQuotaAndThinPool(t *testing.T) {
	st := newStore(t)
	err := st.full(fmt.Errorf("file: put x: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}))
	if !errors.Is(err, syscall.EDQUOT) || !strings.Contains(err.Error(), fmt.Sprintf("a disk quota of uid %d or of its group is used up on the file system holding %s; the file system itself had ", os.Getuid(), st.Location(""))) {
		t.Errorf("full(EDQUOT) = %v", err)
	}
	if sp, ok := statSpace(st.Root); !ok || sp.free < roomy {
		t.Logf("%s has less than %d bytes free: not checking ENOSPC there", st.Root, roomy)
	} else {
		err = st.full(fmt.Errorf("file: put x: writeback: %w", syscall.ENOSPC))
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "so what ran out is not the space df shows: a thin-provisioned volume's pool, a network file system's server, or btrfs metadata)") {
			t.Errorf("full(ENOSPC) with room = %v", err)
		}
	}
	other := errors.New("file: put x: permission denied")
	if got := st.full(other); got != other {
		t.Errorf("full(%v) = %v; want it unchanged", other, got)
	}
}

// TestDeleteOnFullFileSystem: Delete first renames the key to a temporary
// (to free a big file gently), and on a full file system that rename can
// fail with ENOSPC: ext4 when the folder's directory block has no room for
// the longer name, copy-on-write file systems (btrfs, ZFS) for the new
// metadata, and EDQUOT under a quota. Deleting is how retention and an
// operator make room, so it must unlink at once instead.
func TestDeleteOnFullFileSystem(t *testing.T) {
	ctx := context.Background()
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			st := newStore(t)
			id := "20261207-040000-full"
			p := bigFile(t, st, storage.DataKey(id), 3*shrinkStep)
			renames := 0
			st.renameFile = func(oldpath, newpath string) error {
				renames++
				return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errno}
			}
			if err := st.Delete(ctx, storage.DataKey(id)); err != nil {
				t.Fatalf("Delete with the rename failing %v: %v", errno, err)
			}
			if renames != 1 {
				t.Errorf("rename tried %d times, want 1", renames)
			}
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the file is still there: %v", err)
			}
			assertNothingLeft(t, st)
			if err := st.Delete(ctx, storage.DataKey(id)); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("second Delete = %v; want ErrNotFound", err)
			}
		})
	}
}

// TestDeleteOnFullExt4 is TestDeleteOnFullFileSystem on a real ext4 that
// is full, with the backup's folder's one directory block full too, so
// that the rename to the longer temporary name needs a new block: it
// fails with ENOSPC there (as mv does), and Delete must still free the
// file. Needs root, mkfs.ext4 and a loop device; skipped elsewhere.
func TestDeleteOnFullExt4(t *testing.T) {
	ctx := context.Background()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("no mkfs.ext4")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	// 4 KiB blocks, no reserve for root, and plain linear directories
	// without checksum tails, so the block's fill below is exact.
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-m", "0", "-O", "^dir_index,^has_journal,^metadata_csum", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("mount a loop device: %v: %s (needs root)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	st, err := New(filepath.Join(dir, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	id := "20261207-050000-full"
	key := storage.DataKey(id) // 29 bytes: a 40-byte entry
	// Written directly, not with Put, whose temporary's entry would leave
	// a gap in the block.
	folder := filepath.Join(st.Root, id)
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, id+".dump.zst"), make([]byte, 2*shrinkStep), 0o600); err != nil {
		t.Fatal(err)
	}
	// The block holds "." and ".." (12 bytes each), the key's entry, and
	// 336 entries of 4-byte names (12 bytes each): 4096 bytes, no room.
	for i := range 336 {
		if err := os.WriteFile(filepath.Join(folder, fmt.Sprintf("f%03d", i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(folder); err != nil || fi.Size() != 4096 {
		t.Fatalf("folder: %v, %v; want one 4096-byte block", fi, err)
	}
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer fill.Close()
	// ext4 gives back blocks it had set aside for a file's metadata once
	// the file is synced: fill again until nothing more goes in.
	block := make([]byte, 4096)
	for round := 0; ; round++ {
		n := 0
		for {
			if _, err := fill.Write(block); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the file system: %v; want ENOSPC", err)
				}
				break
			}
			n++
		}
		fill.Sync()
		if n == 0 {
			break
		}
		if round == 20 {
			t.Fatal("the file system does not fill up")
		}
	}

	if err := st.Delete(ctx, key); err != nil {
		t.Fatalf("Delete on the full file system: %v", err)
	}
	if _, err := st.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after Delete: %v; want ErrNotFound", err)
	}
	if free, _ := statSpace(st.Root); free.free < 2*shrinkStep {
		t.Errorf("%d bytes free after the delete; want the deleted file's %d back", free.free, 2*shrinkStep)
	}
}
