package dump

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
}
