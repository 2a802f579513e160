package dump

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeTool writes a program that prints a PostgreSQL-style version line.
func fakeTool(t *testing.T, dir, name, version string) {
	t.Helper()
	script := "#!/bin/sh\necho '" + name + " (PostgreSQL) " + version + "'\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindToolPrefersBinDirAndExplainsMisfits(t *testing.T) {
	old := debianBinGlob
	t.Cleanup(func() { debianBinGlob = old })
	root := t.TempDir()
	for _, v := range []string{"13", "16"} {
		d := filepath.Join(root, v, "bin")
		os.MkdirAll(d, 0o755)
		fakeTool(t, d, "pg_dump", v+".4")
	}
	debianBinGlob = filepath.Join(root, "*", "bin")
	t.Setenv("PATH", t.TempDir())
	own := t.TempDir()
	fakeTool(t, own, "pg_dump", "14.2")
	ctx := context.Background()

	// PG_BIN_DIR first when it fits.
	if tool, err := FindTool(ctx, "pg_dump", own, 14); err != nil || tool.Path != filepath.Join(own, "pg_dump") || tool.Major != 14 {
		t.Fatalf("FindTool = %+v, %v; want the PG_BIN_DIR one", tool, err)
	}
	// Too old there: the newest Debian directory that fits.
	if tool, err := FindTool(ctx, "pg_dump", own, 15); err != nil || tool.Major != 16 {
		t.Fatalf("FindTool = %+v, %v; want 16", tool, err)
	}
	// None fits: the error names what was found and what to install.
	_, err := FindTool(ctx, "pg_dump", own, 17)
	if err == nil {
		t.Fatal("FindTool found a pg_dump older than the server")
	}
	for _, want := range []string{"is 14.2", "is 16.4", "is 13.4", "postgresql-client-17", "PGBACKUPS_PG_BIN_DIR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// For dumping, the server's own version when installed (its archive
	// is one the server's pg_restore reads), else the oldest newer one;
	// PG_BIN_DIR still first.
	fakeTool(t, filepath.Join(root, "13", "bin"), "pg_dump", "13.4")
	for _, d := range []string{"15", "17"} {
		os.MkdirAll(filepath.Join(root, d, "bin"), 0o755)
		fakeTool(t, filepath.Join(root, d, "bin"), "pg_dump", d+".1")
	}
	for server, want := range map[int]int{13: 13, 15: 15, 16: 16, 17: 17} {
		if tool, err := FindDumpTool(ctx, "pg_dump", "", server); err != nil || tool.Major != want {
			t.Errorf("FindDumpTool for a %d server = %+v, %v; want %d", server, tool, err, want)
		}
	}
	if tool, err := FindDumpTool(ctx, "pg_dump", "", 14); err != nil || tool.Major != 15 {
		t.Errorf("FindDumpTool for a 14 server (no 14 installed) = %+v, %v; want 15, the oldest newer", tool, err)
	}
	if tool, err := FindDumpTool(ctx, "pg_dump", own, 13); err != nil || tool.Major != 14 {
		t.Errorf("FindDumpTool with PG_BIN_DIR = %+v, %v; want its 14", tool, err)
	}
}

// Every candidate pg_dump on the search path is run with --version, so
// each must get the child environment, not pgbackups' secrets.
func TestToolVersionGetsNoSecrets(t *testing.T) {
	old := debianBinGlob
	t.Cleanup(func() { debianBinGlob = old })
	debianBinGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Setenv("PATH", t.TempDir())
	secrets := map[string]string{
		"PGBACKUPS_DATABASE_URL":         "postgres://app:db-secret@db/app",
		"PGBACKUPS_S3_SECRET_ACCESS_KEY": "s3-secret",
		"PGBACKUPS_WEBHOOK_URL":          "https://hooks.example/token-secret",
		"DATABASE_URL":                   "postgres://app:fallback-secret@db/app",
		"AWS_SECRET_ACCESS_KEY":          "aws-secret",
		"AWS_SESSION_TOKEN":              "aws-token-secret",
		// libpq's: --version never connects, so it gets none of them.
		"PGPASSWORD": "pg-secret",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("LC_TIME", "kept") // the rest of the environment reaches it
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	script := "#!/bin/sh\nexport -p > " + envFile + "\necho 'pg_dump (PostgreSQL) 16.4'\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindTool(context.Background(), "pg_dump", dir, 16); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range secrets {
		if strings.Contains(string(b), v) || strings.Contains(string(b), k+"=") {
			t.Errorf("pg_dump --version got %s:\n%s", k, b)
		}
	}
	if !strings.Contains(string(b), "LC_TIME=") {
		t.Errorf("pg_dump --version lost the rest of the environment:\n%s", b)
	}
}

// TestWarnNewerDump: capture warns when pg_dump is newer than the server,
// and says plainly when that makes the backup unrestorable into it.
func TestWarnNewerDump(t *testing.T) {
	for _, tc := range []struct {
		dump, server int
		want         string // "" for no warning
	}{
		{15, 15, ""},
		{16, 16, ""},
		{16, 15, "restoring this backup needs a pg_restore at least as new"},
		{17, 16, "cannot be restored into the server it came from"},
		{18, 14, "cannot be restored into the server it came from"},
		{18, 17, "restoring this backup needs a pg_restore at least as new"},
	} {
		var buf bytes.Buffer
		warnNewerDump(slog.New(slog.NewTextHandler(&buf, nil)), Tool{Path: "/x/pg_dump", Version: fmt.Sprintf("%d.1", tc.dump), Major: tc.dump}, tc.server)
		out := buf.String()
		if tc.want == "" {
			if out != "" {
				t.Errorf("pg_dump %d, server %d: warned %s", tc.dump, tc.server, out)
			}
			continue
		}
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, tc.want) || !strings.Contains(out, fmt.Sprintf("install=postgresql-client-%d", tc.server)) {
			t.Errorf("pg_dump %d, server %d: %q; want a warning with %q naming postgresql-client-%d", tc.dump, tc.server, out, tc.want, tc.server)
		}
	}
}

// TestFindToolOutOfFiles: a process out of file descriptors cannot start
// pg_dump --version; the error says so, rather than asking to install the
// client that is there. The limit is lowered in a child test process: set
// here, it would reach every test running meanwhile, and what the children
// of later tests inherit.
func TestFindToolOutOfFiles(t *testing.T) {
	if os.Getenv("PGBACKUPS_TEST_OUT_OF_FILES") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFindToolOutOfFiles$", "-test.v")
		cmd.Env = append(os.Environ(), "PGBACKUPS_TEST_OUT_OF_FILES=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestFindToolOutOfFiles") {
			t.Fatalf("child test: %v\n%s", err, out)
		}
		return
	}
	dir := t.TempDir()
	fakeTool(t, dir, "pg_dump", "16.4")
	// The lowest free descriptor number: a new descriptor always takes
	// the lowest free one, so a limit at that number leaves no room for
	// the pipes to the child. Counting the open descriptors would not do:
	// descriptors this process inherited (a CI runner's, above 2) leave
	// free numbers below the count.
	lowest, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(lowest)
	var low syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	saved := low
	low.Cur = uint64(lowest) // no room for the pipes to the child
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	// Runs before TempDir's clean-up, which needs a descriptor of its own.
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
			t.Errorf("restore the open-file limit: %v", err)
		}
	})
	_, err = FindTool(context.Background(), "pg_dump", dir, 16)
	if err == nil || !strings.Contains(err.Error(), "open-file limit") || strings.Contains(err.Error(), "apt install") {
		t.Fatalf("FindTool out of file descriptors: %v, want the open-file limit named and no install advice", err)
	}
}
