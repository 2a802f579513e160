package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// preStopHook returns the postgres container's preStop command of the
// Kubernetes example.
func preStopHook(t *testing.T) []string {
	t.Helper()
	files := parseYAMLFiles(t, "examples/kubernetes/*.yaml")
	for _, w := range objectsOfKind(files, "StatefulSet") {
		for _, c := range list(dig(w, "spec", "template", "spec", "containers")) {
			if !strings.HasPrefix(str(c["image"]), "postgres") {
				continue
			}
			var cmd []string
			args, _ := dig(c, "lifecycle", "preStop", "exec", "command").([]any)
			for _, a := range args {
				cmd = append(cmd, str(a))
			}
			if len(cmd) == 0 {
				t.Fatal("the postgres container has no preStop exec command")
			}
			return cmd
		}
	}
	t.Fatal("no postgres container in examples/kubernetes")
	return nil
}

// TestKubernetesPreStopHook runs the example's preStop hook against a real
// server: it waits while a pgbackups session is open and returns once it
// is gone, and when psql cannot ask (here a wrong password; in a pod, a
// changed pg_hba.conf) it fails loudly instead of returning at once as if
// no backup ran, which would let the fast shutdown cut the backup.
func TestKubernetesPreStopHook(t *testing.T) {
	pg := testenv.PG(t)
	hook := preStopHook(t)
	start := func(password string) (*exec.Cmd, *bytes.Buffer, chan error) {
		cmd := exec.Command(hook[0], hook[1:]...)
		cmd.Env = []string{
			"PATH=" + filepath.Dir(pg.Tool("psql")) + ":/usr/bin:/bin",
			"PGHOST=" + pg.Host, "PGPORT=" + strconv.Itoa(pg.Port), "PGDATABASE=postgres",
			"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5",
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, &out, done
	}
	wait := func(done chan error, out *bytes.Buffer) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("the hook still runs 30 s later\n%s", out)
			return nil
		}
	}

	t.Run("no backup running", func(t *testing.T) {
		_, out, done := start(pg.Password)
		if err := wait(done, out); err != nil {
			t.Errorf("hook with no pgbackups session: %v\n%s", err, out)
		}
	})

	t.Run("waits for the backup", func(t *testing.T) {
		cfg, err := pgx.ParseConfig(pg.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = "pgbackups-dump-20261207-000000-test"
		conn, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		_, out, done := start(pg.Password)
		select {
		case err := <-done:
			t.Fatalf("the hook returned (%v) while a pgbackups session was open\n%s", err, out)
		case <-time.After(2500 * time.Millisecond):
		}
		conn.Close(context.Background())
		if err := wait(done, out); err != nil {
			t.Errorf("hook after the pgbackups session ended: %v\n%s", err, out)
		}
	})

	t.Run("psql fails", func(t *testing.T) {
		_, out, done := start("not-the-password")
		err := wait(done, out)
		if err == nil || !strings.Contains(out.String(), "psql failed") {
			t.Errorf("hook whose psql cannot connect: %v, want a failure that says so\n%s", err, out)
		}
	})
}
