package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// backendTitle is the process title of pid as ps shows it.
func backendTitle(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")), nil
}

// checkBackend makes sure pid is, in this PID namespace, the backend
// pg_stat_activity described.
func checkBackend(pid, clientPort int) error {
	title, err := backendTitle(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return errNotHere
	}
	if err != nil {
		return err
	}
	if !isBackendTitle(title, clientPort) {
		// Not the title itself: another process's arguments can hold
		// secrets (psql postgres://user:password@...).
		return fmt.Errorf("%w (pid %d here is not that backend)", errNotHere, pid)
	}
	return nil
}

// lowerBackend renices the backend pid to nice unless it already runs at
// least that low, and returns its niceness before.
func lowerBackend(pid, clientPort, nice int) (prev int, err error) {
	if err := checkBackend(pid, clientPort); err != nil {
		return 0, err
	}
	prev, err = niceness(pid)
	if err != nil {
		return 0, fmt.Errorf("getpriority: %w", err)
	}
	if prev >= nice {
		return prev, nil
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, nice); err != nil {
		err = fmt.Errorf("setpriority nice %d: %w", nice, err)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			err = fmt.Errorf("%w: renicing another user's process takes running as the PostgreSQL server's user or CAP_SYS_NICE", err)
		}
		return 0, err
	}
	return prev, nil
}

// backendAlive reports whether the backend pid still serves the same client.
func backendAlive(pid, clientPort int) bool { return checkBackend(pid, clientPort) == nil }

// restoreBackend gives a backend that outlived the dump its niceness back.
// Raising a priority takes CAP_SYS_NICE (or RLIMIT_NICE).
func restoreBackend(pid, clientPort, nice int) error {
	if err := checkBackend(pid, clientPort); err != nil {
		return nil // gone meanwhile
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, nice); err != nil {
		return fmt.Errorf("setpriority nice %d: %w", nice, err)
	}
	return nil
}
