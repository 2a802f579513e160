//go:build !linux

package testenv

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// Cleanup is the only thing that stops versitygw.
func sysProcAttr() *syscall.SysProcAttr { return nil }
