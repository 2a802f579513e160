package dump

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// passfileIn creates an empty file named name in dir.
func passfileIn(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("*:*:*:*:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestRemoveTempFilesRemovesThisProcessOwn(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	c, err := ParseConn("postgres://app:pw@db/app")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := c.forChild(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.cleanup()
	var ours string
	for _, kv := range ca.env {
		if v, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
			ours = v
		}
	}
	if want := fmt.Sprintf("pgbackups-pgpass-%d-", os.Getpid()); !strings.HasPrefix(filepath.Base(ours), want) || filepath.Dir(ours) != tmp {
		t.Fatalf("passfile %s, want %s/%s*", ours, tmp, want)
	}
	archive, err := createRestoreTemp(os.TempDir(), "20261125-020000-k3f9")
	if err != nil {
		t.Fatal(err)
	}
	archive.Close()
	other := passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-123", os.Getpid()+1))
	// Our pid in the name, but another PID namespace's process wrote it.
	namesake := passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-456", os.Getpid()))
	unrelated := passfileIn(t, tmp, "unrelated")

	RemoveTempFiles()
	if exists(ours) {
		t.Error("RemoveTempFiles left this process's passfile")
	}
	if exists(archive.Name()) {
		t.Error("RemoveTempFiles left this process's restore archive")
	}
	if !exists(other) || !exists(unrelated) || !exists(namesake) {
		t.Error("RemoveTempFiles removed a file that is not this process's")
	}
}

func TestSweepStaleTempFilesOfProcessesThatAreGone(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	alive := exec.Command("sleep", "60")
	if err := alive.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alive.Process.Kill(); alive.Wait() })

	ownOld := passfileIn(t, tmp, fmt.Sprintf("pgbackups-restore-%d-20261125-020000-k3f9-7.dump", os.Getpid()))
	if err := os.Chtimes(ownOld, processStart.Add(-time.Hour), processStart.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	stale := []string{
		ownOld, // our pid, but older than us: a previous pid 1 of this container
		passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-42", gone.Process.Pid)),
		passfileIn(t, tmp, fmt.Sprintf("pgbackups-restore-%d-20261125-020000-k3f9-42.dump", gone.Process.Pid)),
	}
	keep := []string{
		passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-42", alive.Process.Pid)),
		passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-42", os.Getpid())),
		passfileIn(t, tmp, fmt.Sprintf("pgbackups-restore-%d-20261125-020000-k3f9-42.dump", alive.Process.Pid)),
		passfileIn(t, tmp, "pgbackups-restore-20261125-020000-k3f9-42.dump"), // an older build's name: no pid
		passfileIn(t, tmp, "pgbackups-pgpass-0-42"),                          // kill(0) is our process group
		passfileIn(t, tmp, "pgbackups-pgpass--1-42"),                         // kill(-1) is every process
		passfileIn(t, tmp, "pgbackups-pgpass-12345"),                         // no pid in the name
		passfileIn(t, tmp, "unrelated-12345-1"),
	}
	if n := SweepStaleTempFiles(); n != 3 {
		t.Errorf("SweepStaleTempFiles removed %d, want 3", n)
	}
	for _, p := range stale {
		if exists(p) {
			t.Errorf("%s of a process that is gone was kept", filepath.Base(p))
		}
	}
	for _, p := range keep {
		if !exists(p) {
			t.Errorf("%s was removed", filepath.Base(p))
		}
	}
}

// TestSweepLeavesLockedTempFiles: where $TMPDIR is shared with another PID
// namespace, a live process's pid can look gone from here (or be our own
// pid 1); its lock on the file says the file is in use.
func TestSweepLeavesLockedTempFiles(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	p := passfileIn(t, tmp, fmt.Sprintf("pgbackups-pgpass-%d-42", gone.Process.Pid))
	holder, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	// Files a process left before naming them: removed once old.
	unnamedOld := passfileIn(t, tmp, ".creating-pgbackups-pgpass-42-1")
	unnamedNew := passfileIn(t, tmp, ".creating-pgbackups-restore-42-2")
	if err := os.Chtimes(unnamedOld, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := SweepStaleTempFiles(); n != 1 || !exists(p) || exists(unnamedOld) || !exists(unnamedNew) {
		t.Errorf("SweepStaleTempFiles removed %d: want only the old unnamed file, not a locked file of a pid not seen here", n)
	}
	os.Remove(unnamedNew)
	holder.Close()
	if n := SweepStaleTempFiles(); n != 1 || exists(p) {
		t.Errorf("SweepStaleTempFiles removed %d once unlocked, want 1", n)
	}

	// This process's own files are locked from before they have their
	// name until removeTemp.
	f, err := createPassfile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !inUse(f.Name()) {
		t.Errorf("%s is not locked", filepath.Base(f.Name()))
	}
	if err := os.Chtimes(f.Name(), processStart.Add(-time.Hour), processStart.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if SweepStaleTempFiles(); !exists(f.Name()) {
		t.Error("the sweep removed a file this process has in use")
	}
	removeTemp(f.Name())
	if exists(f.Name()) || inUse(f.Name()) {
		t.Error("removeTemp left the file or its lock")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}
