package testenv

import "syscall"

// sysProcAttr has the kernel SIGKILL versitygw when the test binary dies
// without calling Cleanup (a panic, a timeout, go test -failfast killing
// it). Pdeathsig fires when the starting OS thread exits; Go only ends
// threads that a goroutine left locked, which testenv never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
