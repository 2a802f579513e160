package dump

import (
	"errors"
	"os"
	"runtime"
	"testing"
)

func TestIsBackendTitle(t *testing.T) {
	for _, c := range []struct {
		title string
		port  int
		want  bool
	}{
		{"postgres: app shop 127.0.0.1(53112) COPY", 53112, true},
		{"postgres: main: app shop 10.0.0.7(53112) idle", 53112, true}, // cluster_name
		{"postgres: app shop [local] COPY", -1, true},
		{"postgres: app shop 127.0.0.1(53112) COPY", 5311, false}, // another client
		{"postgres: app shop 127.0.0.1(53112) COPY", -1, false},
		{"postgres: app shop [local] COPY", 53112, false},
		{"postgres: checkpointer", 53112, false},
		{"/usr/bin/python3 app.py (53112)", 53112, false}, // a pid that means another process here
		{"", -1, false},
	} {
		if got := isBackendTitle(c.title, c.port); got != c.want {
			t.Errorf("isBackendTitle(%q, %d) = %v, want %v", c.title, c.port, got, c.want)
		}
	}
}

// TestLowerBackendChecksIdentity: a pid that is not PostgreSQL's backend in
// this namespace is left alone.
func TestLowerBackendChecksIdentity(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if _, err := lowerBackend(os.Getpid(), 5432, 10); !errors.Is(err, errNotHere) {
		t.Errorf("lowering the test process: err = %v, want errNotHere", err)
	}
	if _, err := lowerBackend(1<<22+1, 5432, 10); !errors.Is(err, errNotHere) { // above pid_max
		t.Errorf("lowering a missing pid: err = %v, want errNotHere", err)
	}
}
