package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestURLPrintedOnStdoutOnly: a pre-signed URL reads the whole backup
// until it expires, so `url` prints it on stdout only. Its hint on stderr,
// which reaches terminals, CI logs and the journal even when stdout is
// captured ($(pgbackups url latest)), used to repeat it, signature and all.
func TestURLPrintedOnStdoutOnly(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	srv := testenv.S3(t)
	env := append(srv.Env(), "PGBACKUPS_DATABASE_URL="+pg.URL(db))
	r := run(t, env, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	r = run(t, env, "url", "latest", "--expires", "5m")
	if r.code != 0 {
		t.Fatalf("url: exit %d\n%s", r.code, r.stderr)
	}
	u, err := url.Parse(strings.TrimSpace(r.stdout))
	if err != nil || u.Query().Get("X-Amz-Signature") == "" {
		t.Fatalf("stdout is not a pre-signed URL: %q (%v)", r.stdout, err)
	}
	sig := u.Query().Get("X-Amz-Signature")
	if strings.Contains(r.stderr, sig) || strings.Contains(r.stderr, u.RawQuery) {
		t.Errorf("the pre-signed URL is repeated on stderr:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "| zstd -d | pg_restore") {
		t.Errorf("stderr lost the restore hint:\n%s", r.stderr)
	}
}
