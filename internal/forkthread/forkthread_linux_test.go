package forkthread

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A child with Pdeathsig survives the exit of the thread of the goroutine
// that asked for it; started with plain cmd.Start it would be killed.
func TestChildOutlivesCallersThread(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   func(*exec.Cmd) error
		survive bool
	}{
		{"forkthread.Start", Start, true},
		{"cmd.Start (control)", (*exec.Cmd).Start, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sleep", "30")
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			started := make(chan error)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
				started <- tc.start(cmd)
			}()
			if err := <-started; err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if tc.survive {
					t.Fatalf("child died with the caller's thread: %v", err)
				}
			case <-time.After(2 * time.Second):
				cmd.Process.Kill()
				<-exited
				if !tc.survive {
					t.Fatal("control: the child outlived its forking thread, so this test proves nothing here")
				}
			}
		})
	}
}
