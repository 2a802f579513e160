package dump

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr puts the child in its own process group and has the kernel
// kill it if pgbackups dies, so no pg_dump outlives the process that would
// have stored its output.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
