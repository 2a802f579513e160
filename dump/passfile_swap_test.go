package dump

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFileNotReopenedByName: a passfile (and a restore archive) is
// written through the descriptor that created it. Another user who can
// write to $TMPDIR (no sticky bit, or pgbackups running as root) and swaps
// the final name for a symlink to a file of theirs right after the rename
// used to get the password written into that file, since the file was
// opened again by name.
func TestSecretFileNotReopenedByName(t *testing.T) {
	dir := t.TempDir()
	theirs := filepath.Join(t.TempDir(), "theirs")
	if err := os.WriteFile(theirs, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	swapped := ""
	afterRename = func(name string) {
		if err := os.Remove(name); err != nil {
			t.Errorf("swap: %v", err)
		}
		if err := os.Symlink(theirs, name); err != nil {
			t.Errorf("swap: %v", err)
		}
		swapped = name
	}
	t.Cleanup(func() { afterRename = func(string) {} })

	name, err := writeSecretFile(dir, "*:*:*:*:s3cret-pw\n")
	if err != nil {
		t.Fatal(err)
	}
	defer removeTemp(name)
	if swapped == "" {
		t.Fatal("the name was never swapped")
	}
	if got, _ := os.ReadFile(theirs); strings.Contains(string(got), "s3cret-pw") {
		t.Fatalf("the password went through the swapped-in symlink into %s: %q", theirs, got)
	}

	f, err := createRestoreTemp(dir, "20260101-000000-abcd")
	if err != nil {
		t.Fatal(err)
	}
	defer removeTemp(f.Name())
	if _, err := f.WriteString("the whole database"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := os.ReadFile(theirs); len(got) != 0 {
		t.Fatalf("the restore archive went through the swapped-in symlink into %s: %q", theirs, got)
	}
}
