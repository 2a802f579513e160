package dump

import (
	"os"
	"syscall"
	"testing"
)

// TestSecretFilesPrivateUnderAnyUmask: passfiles and restore archives are
// 0600 whatever the umask.
func TestSecretFilesPrivateUnderAnyUmask(t *testing.T) {
	for _, mask := range []int{0o000, 0o022, 0o077} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		name, err := writeSecretFile(dir, "*:*:*:*:pw\n")
		if err != nil {
			syscall.Umask(old)
			t.Fatal(err)
		}
		f, err := createRestoreTemp(dir, "20260101-000000-abcd")
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		for _, p := range []string{name, f.Name()} {
			fi, err := os.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Errorf("umask %03o: %s: %v, %v; want a 0600 regular file", mask, p, fi.Mode(), err)
			}
			removeTemp(p)
		}
	}
}
