// Package forkthread starts child processes from one OS thread that lives
// as long as the process.
//
// On Linux, Pdeathsig (which pgbackups sets so that no pg_dump outlives it)
// fires when the *thread* that forked the child exits, not the process.
// Go ends a thread whenever a goroutine exits while locked to it, and
// capture does that on purpose with the thread it lowers to compress a
// dump. A child forked from an ordinary goroutine's thread could therefore
// be SIGKILLed mid-run when that thread later happened to carry the
// compressor: a pg_dump between closing its output and exiting, or, in
// the tests, the shared S3 server. Children started here are forked from
// a thread no other goroutine ever runs on, and that never exits.
package forkthread

import (
	"os/exec"
	"runtime"
	"sync"
)

var (
	once sync.Once
	reqs chan func()
)

// Start is cmd.Start, run on the process's forking thread.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range reqs {
				f()
			}
		}()
	})
	done := make(chan error, 1)
	reqs <- func() { done <- cmd.Start() }
	return <-done
}

// Run is cmd.Run, started on the process's forking thread.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}
