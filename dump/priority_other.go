//go:build !linux

package dump

import (
	"errors"
	"fmt"
	"syscall"
)

// errNoIOPriority is returned where the platform has no ioprio_set(2).
var errNoIOPriority = errors.New("IO priority is not supported on this platform")

func (p Priority) apply(pid int) error {
	var errs []error
	if p.Nice > 0 {
		// BSD getpriority returns the niceness itself.
		cur, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
		if err == nil && cur < p.Nice {
			err = syscall.Setpriority(syscall.PRIO_PROCESS, pid, p.Nice)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setpriority nice %d: %w", p.Nice, err))
		}
	}
	if p.IOClass != IOClassNone {
		errs = append(errs, fmt.Errorf("ioprio %s: %w", p.ioString(), errNoIOPriority))
	}
	return errors.Join(errs...)
}

// errNoThreadPriority is returned where priorities belong to processes.
var errNoThreadPriority = errors.New("per-thread priority is not supported on this platform")

func (p Priority) applyThread() error { return errNoThreadPriority }

// applySelf lowers the whole process: outside Linux, niceness is per process.
func (p Priority) applySelf() error { return p.apply(0) }
