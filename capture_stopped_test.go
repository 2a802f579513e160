package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestCaptureStoppedIsRecordedSo: a capture the operator stops (SIGTERM)
// exits 143 and records its failed backup as stopped, so a daemon that
// starts after it does not take it for a failure and say "failing".
func TestCaptureStoppedIsRecordedSo(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g")
	store := t.TempDir()
	env := []string{"PGBACKUPS_DATABASE_URL=" + pg.URL(db), "PGBACKUPS_STORAGE_URL=" + store, "PGBACKUPS_GLOBALS=false", "PGBACKUPS_MAX_RATE=1MiB"}
	cmd := exec.Command(binary, "capture")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stderr lockedBuffer // read while the command writes it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "backup starting"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the capture did not start:\n%s", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Fatalf("exit %d after SIGTERM, want 143\n%s", code, stderr.String())
	}
	ms := listJSON(t, env, "--all")
	if len(ms) != 1 || ms[0].Status != "failed" || !ms[0].Stopped {
		t.Errorf("stored %+v, want one failed backup marked stopped", ms)
	}
}
