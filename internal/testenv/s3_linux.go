package testenv

import "syscall"

// sysProcAttr has the kernel SIGKILL versitygw when the test binary dies
// without calling Cleanup (a panic, a timeout, go test -failfast killing
// it). Pdeathsig fires when the starting OS thread exits, and Go ends a
// thread that a goroutine left locked (capture's compressor does), so
// versitygw is started on internal/forkthread's thread, which never exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
