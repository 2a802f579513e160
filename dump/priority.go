package dump

import (
	"fmt"
	"strconv"
)

// Priority is the CPU and IO scheduling priority a backup's client side
// runs at (PGBACKUPS_NICE, PGBACKUPS_IONICE_CLASS).
//
// It lowers the client only: pg_dump, and pgbackups' own compressor when
// the process lowers itself. The server backend doing the COPY is a
// separate process, not pgbackups' child: BackendNice lowers it where it
// can, and backpressure (MaxRate) slows it anywhere, because a backend
// whose client stops reading blocks on its socket. Priority matters where
// pg_dump and the compressor share CPUs with PostgreSQL, which is the usual
// sidecar or same-host deployment.
type Priority struct {
	Nice    int // 1-19 (higher is lower priority); 0 leaves CPU priority alone
	IOClass int // ioprio_set(2) class: 0 leaves IO priority alone, 2 best-effort, 3 idle
	IOLevel int // best-effort level, 0-7 (7 lowest)
}

// IO priority classes, as ioprio_set(2) numbers them (the same numbers
// config.ParseIONice returns).
const (
	IOClassNone       = 0
	IOClassBestEffort = 2
	IOClassIdle       = 3
)

// IsZero reports whether p changes nothing.
func (p Priority) IsZero() bool { return p.Nice <= 0 && p.IOClass == IOClassNone }

func (p Priority) ioString() string {
	switch p.IOClass {
	case IOClassIdle:
		return "idle"
	case IOClassBestEffort:
		return "best-effort:" + strconv.Itoa(p.IOLevel)
	}
	return fmt.Sprintf("class %d level %d", p.IOClass, p.IOLevel)
}

// Apply lowers process pid to p. It never raises a priority: a process
// already nicer than p.Nice (say, under systemd's Nice=15) keeps its value,
// which also keeps unprivileged callers clear of EACCES. Errors (the
// platform refuses, or lacks IO priorities) are for the caller to log:
// priority is an optimisation, never a reason to fail a backup.
func (p Priority) Apply(pid int) error {
	if p.IsZero() {
		return nil
	}
	return p.apply(pid)
}

// ApplyThread lowers the calling OS thread to p. The caller must have
// locked its goroutine to the thread (runtime.LockOSThread) and must never
// unlock it, so that the thread exits with the goroutine rather than go
// back, lowered, to the runtime's pool, where the daemon's HTTP handlers
// and scheduler would run on it. Capture does this for the goroutine that
// reads, hashes and compresses pg_dump's output: most of pgbackups' CPU
// during a backup, and in the daemon the only part that is lowered. (Should
// the runtime have put the goroutine on the process's main thread, that
// thread is parked for good instead of ended: it too never runs Go code
// again, but ps then shows the process at the lowered niceness.)
func (p Priority) ApplyThread() error {
	if p.IsZero() {
		return nil
	}
	return p.applyThread()
}

// ApplySelf lowers this process to p. Meant for the one-shot capture
// command, where it covers the rest of the process (the upload, the
// monitors) beside the compressor's thread and pg_dump. The daemon must
// not call it: an unprivileged process cannot raise its priority back, so
// its HTTP endpoints and scheduler would stay lowered between backups for
// good. In the daemon only pg_dump and the compressor's thread are lowered.
func (p Priority) ApplySelf() error {
	if p.IsZero() {
		return nil
	}
	return p.applySelf()
}
