package dump

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ioprio_set(2) encoding: the class in the top bits, the level below.
const (
	ioprioWhoProcess = 1
	ioprioClassShift = 13
)

func (p Priority) apply(tid int) error {
	var errs []error
	if p.Nice > 0 {
		cur, err := niceness(tid)
		if err == nil && cur < p.Nice {
			err = unix.Setpriority(unix.PRIO_PROCESS, tid, p.Nice)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setpriority nice %d: %w", p.Nice, err))
		}
	}
	if p.IOClass != IOClassNone {
		cur, err := ioprioGet(tid)
		if err == nil && cur>>ioprioClassShift != IOClassIdle {
			prio := p.IOClass<<ioprioClassShift | p.IOLevel
			if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(prio)); e != 0 {
				err = e
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("ioprio_set %s: %w", p.ioString(), err))
		}
	}
	return errors.Join(errs...)
}

// niceness is thread tid's nice value. Linux niceness is per thread, and
// the raw getpriority syscall returns 20-nice so that it is never negative.
func niceness(tid int) (int, error) {
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	return 20 - raw, err
}

func (p Priority) applyThread() error { return p.apply(unix.Gettid()) }

// ioprioGet returns the raw ioprio_get(2) value of thread tid.
func ioprioGet(tid int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// applySelf lowers every thread of this process: on Linux both niceness and
// IO priority belong to threads, and the Go runtime runs goroutines on
// several. Threads created later inherit from the thread that creates them,
// which is by then lowered too; a second pass catches threads started while
// the first was walking the list.
func (p Priority) applySelf() error {
	var err error
	for range 2 {
		ents, rerr := os.ReadDir("/proc/self/task")
		if rerr != nil {
			return fmt.Errorf("list threads: %w", rerr)
		}
		err = nil
		for _, e := range ents {
			tid, cerr := strconv.Atoi(e.Name())
			if cerr != nil {
				continue
			}
			if aerr := p.apply(tid); aerr != nil && !errors.Is(aerr, unix.ESRCH) {
				err = aerr // the same refusal for every thread: keep one
			}
		}
	}
	return err
}
