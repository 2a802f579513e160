package dump

import (
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSecretFilesNotInherited: a child started while another goroutine
// creates a passfile must not inherit a descriptor of it. Duplicating a
// descriptor and then marking it close-on-exec left a window in which a
// fork took it along (about one child in fifteen, measured).
func TestSecretFilesNotInherited(t *testing.T) {
	dir := t.TempDir()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				f, err := createPassfile(dir)
				if err != nil {
					t.Error(err)
					return
				}
				name := f.Name()
				f.Close()
				removeTemp(name)
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	for i := range 400 {
		out, err := exec.Command("ls", "-l", "/proc/self/fd").CombinedOutput()
		if err != nil {
			t.Fatalf("ls: %v: %s", err, out)
		}
		if strings.Contains(string(out), "pgbackups-pgpass-") {
			t.Fatalf("child %d inherited a passfile descriptor:\n%s", i, out)
		}
	}
}
