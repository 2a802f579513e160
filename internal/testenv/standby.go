package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// NewStandby starts a hot standby streaming from p: pg_basebackup -R into a
// temp dir, then a second server on a free port, run as the same user as p.
// It is stopped when the test ends. extra are postgresql.conf lines for the
// standby (max_standby_streaming_delay, hot_standby_feedback, ...). It
// returns once the standby accepts connections and has replayed everything
// p had written when NewStandby was called.
func (p *Postgres) NewStandby(t testing.TB, extra ...string) *Postgres {
	t.Helper()
	s, err := p.startStandby(extra)
	if err != nil {
		t.Fatalf("testenv: start standby: %v", err)
	}
	t.Cleanup(s.Destroy)
	p.WaitReplay(t, s)
	return s
}

func (p *Postgres) startStandby(extra []string) (*Postgres, error) {
	dir, err := os.MkdirTemp(socketParent(), "pgbackups-standby-*")
	if err != nil {
		return nil, err
	}
	s := &Postgres{BinDir: p.BinDir, dir: dir, DataDir: filepath.Join(dir, "data"), Host: p.Host, User: p.User, Password: p.Password, Major: p.Major, cred: p.cred}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
		os.Chmod(dir, 0o755)
	}
	// The password goes to pg_basebackup's environment only; -R writes it
	// into the standby's primary_conninfo, in the standby's data directory.
	if out, err := s.runEnv([]string{"PGPASSWORD=" + p.Password}, "pg_basebackup",
		"-D", s.DataDir, "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User,
		"-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_basebackup: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Port = port
	// Later lines win over the primary's, copied with the data directory.
	conf := append([]string{
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"hot_standby = on",
	}, extra...)
	if err := appendConf(s.DataDir, conf); err != nil {
		return nil, err
	}
	sharedPGMu.Lock()
	defer sharedPGMu.Unlock()
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	allPG = append(allPG, s)
	return s, nil
}

// runEnv runs a server program as the cluster's owner with extra
// environment variables.
func (p *Postgres) runEnv(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.BinDir, name), args...)
	cmd.Dir = p.dir
	cmd.Env = append(append(os.Environ(), "LC_ALL=C.UTF-8"), env...)
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// WaitReplay waits until standby has replayed everything p has written so
// far.
func (p *Postgres) WaitReplay(t testing.TB, standby *Postgres) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The clusters run with synchronous_commit off, so a commit that has
	// returned may not be written yet, let alone sent. A transaction that
	// writes WAL and commits synchronously flushes everything before it (one
	// that writes none, like SELECT txid_current(), commits asynchronously
	// whatever the setting); the flush position is then past every commit
	// that returned so far.
	pc, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatalf("testenv: connect to primary: %v", err)
	}
	defer pc.Close(ctx)
	var lsn string
	if _, err := pc.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if _, err := pc.Exec(ctx, "SELECT pg_logical_emit_message(true, 'testenv', 'flush')"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := pc.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c, err := pgx.Connect(ctx, standby.URL("postgres"))
	if err != nil {
		t.Fatalf("testenv: connect to standby: %v", err)
	}
	defer c.Close(ctx)
	for {
		var caughtUp bool
		err := c.QueryRow(ctx, "SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn).Scan(&caughtUp)
		if err != nil {
			t.Fatalf("testenv: standby replay position: %v", err)
		}
		if caughtUp {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: standby did not replay up to %s within 60s", lsn)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
