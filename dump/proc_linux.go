package dump

import (
	"io"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setSysProcAttr puts the child in its own process group and has the kernel
// kill it if pgbackups dies, so no pg_dump outlives the process that would
// have stored its output.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// growPipe gives the pipe pgbackups reads pg_dump's output from a capacity
// of readAhead. Best effort: a refusal (the user's pipe quota is spent)
// leaves the default 64 KiB.
func growPipe(r io.Reader) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, readAhead) })
	}
}
