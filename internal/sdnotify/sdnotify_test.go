package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// listen is the service manager's end: a datagram socket at a temp path.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifySendsOneDatagram(t *testing.T) {
	sock := filepath.Join(testenv.SocketDir(t), "notify")
	c := listen(t, sock)
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := Notify(Ready, Status("next backup\nat 02:00")); err != nil {
		t.Fatal(err)
	}
	if got, want := receive(t, c), "READY=1\nSTATUS=next backup at 02:00"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := Notify(Stopping); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != "STOPPING=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "@pgbackups-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000000000")
	c := listen(t, name)
	if err := NotifySocket(name, Ready); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != Ready {
		t.Fatalf("got %q", got)
	}
}

func TestNotifyOutsideSystemdIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(Ready); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	for _, sock := range []string{
		filepath.Join(testenv.SocketDir(t), "nobody-listens"),
		"vsock:2:1234",
	} {
		if err := NotifySocket(sock, Ready); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
			t.Errorf("NotifySocket(%q): %v, want an sdnotify: error", sock, err)
		}
	}
}
