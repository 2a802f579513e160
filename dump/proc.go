package dump

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer keeps the last max bytes written to it: enough of a child's
// stderr to explain a failure, without letting a chatty child grow memory.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped bool
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.dropped = true
	}
	return len(p), nil
}

// String returns the kept tail, trimmed, starting at a line boundary when
// earlier output was dropped.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.dropped {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "..." + strings.TrimSpace(string(b))
	}
	return strings.TrimSpace(string(b))
}

// stderrTailBytes is how much of a child's stderr is kept for errors.
const stderrTailBytes = 8 << 10

// command builds a child from an argument list, never through a shell.
// Start or run it with internal/forkthread, never cmd.Start or cmd.Run:
// its Pdeathsig is tied to the thread that forks it. The child gets its
// own process group (a terminal's Ctrl-C reaches pgbackups, which then
// stops the child in order) and is sent SIGTERM, then SIGKILL after a
// delay, when ctx ends.
func command(ctx context.Context, path string, args []string, env []string) (*exec.Cmd, *tailBuffer) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	stderr := newTailBuffer(stderrTailBytes)
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	setSysProcAttr(cmd)
	return cmd, stderr
}

// childError explains a failed child: how it ended and its stderr's tail.
func childError(name string, err error, stderr *tailBuffer) error {
	if tail := stderr.String(); tail != "" {
		return fmt.Errorf("%s: %w: %s", name, err, tail)
	}
	return fmt.Errorf("%s: %w", name, err)
}
