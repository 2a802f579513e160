package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pgbackups/pgbackups/storage/file"
)

// TestStorageLocationResolvesSymlinks: two spellings of one directory,
// through a symlink, are one backup lock; a capture given one and a prune
// given the other ran side by side.
func TestStorageLocationResolvesSymlinks(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "backups")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	a, err := file.New(real)
	if err != nil {
		t.Fatal(err)
	}
	b, err := file.New(link)
	if err != nil {
		t.Fatal(err)
	}
	if la, lb := storageLocation(a, real), storageLocation(b, "file://"+link+"/"); la != lb {
		t.Errorf("one directory, two lock locations: %q and %q", la, lb)
	}
	other, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if storageLocation(other, "") == storageLocation(a, "") {
		t.Error("two directories share a lock location")
	}
}
