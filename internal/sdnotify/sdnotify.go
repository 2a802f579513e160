// Package sdnotify tells systemd how a Type=notify service is doing: the
// sd_notify(3) protocol, one datagram of newline-separated VAR=value
// assignments to the Unix socket named by $NOTIFY_SOCKET. It is a few lines,
// so pgbackups carries it instead of a dependency.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// States the daemon sends (sd_notify(3) lists them all).
const (
	// Ready: start-up is complete. systemd holds `systemctl start` and
	// ordering on it, and kills the unit after TimeoutStartSec without it.
	Ready = "READY=1"
	// Stopping: shutdown has begun (SIGTERM received).
	Stopping = "STOPPING=1"
)

// Status is a one-line state for `systemctl status`, e.g.
// Status("next backup 2026-11-26 02:00 PST").
func Status(msg string) string {
	return "STATUS=" + strings.ReplaceAll(msg, "\n", " ")
}

// Notify sends states, in one datagram, to the service manager. Outside
// systemd, or under a Type that does not listen ($NOTIFY_SOCKET unset), it
// does nothing and returns nil, so callers need no "are we under systemd"
// check.
func Notify(states ...string) error {
	return NotifySocket(os.Getenv("NOTIFY_SOCKET"), states...)
}

// NotifySocket is Notify with the socket path given: an empty path does
// nothing; a leading "@" names an abstract socket (Go maps it).
func NotifySocket(socket string, states ...string) error {
	if socket == "" || len(states) == 0 {
		return nil
	}
	if socket[0] != '/' && socket[0] != '@' {
		// systemd 253+ also offers vsock: addresses for VMs; not needed here.
		return fmt.Errorf("sdnotify: unsupported NOTIFY_SOCKET %q", socket)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", socket, err)
	}
	return nil
}
