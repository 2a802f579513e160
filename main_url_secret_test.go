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

// TestMisplacedSecretsNotEchoed: a connection string put where an id, a
// command or a schedule belongs (a forgotten --to), a secret put in a
// _FILE variable instead of its path, and an '@' left unencoded in a
// password each made an error quote the password.
func TestMisplacedSecretsNotEchoed(t *testing.T) {
	const pw = "hunter2SECRETpw"
	dir := t.TempDir()
	conn := "postgres://app:" + pw + "@127.0.0.1:1/app"
	env := []string{"PGBACKUPS_STORAGE_URL=" + dir}
	for _, tc := range []struct {
		env  []string
		args []string
		says string
	}{
		{env, []string{"verify", "latest", conn}, "unexpected argument (a connection string, not shown)"},
		{env, []string{"info", conn}, "(a connection string, not shown) is not a backup id"},
		{env, []string{"delete", conn}, "(a connection string, not shown) is not a backup id"},
		{env, []string{conn}, "unknown command (a connection string, not shown)"},
		{env, []string{"schedules", conn}, "a URL is not a schedule"},
		{append(env, "PGBACKUPS_DATABASE_URL_FILE="+pw), []string{"list"}, "PGBACKUPS_DATABASE_URL_FILE: cannot read the file it names (not shown"},
		{append(env, "PGBACKUPS_DATABASE_URL=postgres://app:"+pw+"@TAIL"+pw+"@127.0.0.1:1/app"), []string{"list"}, "PGBACKUPS_DATABASE_URL: holds more than one '@'"},
		// The tail can land in the database name too.
		{append(env, "PGBACKUPS_DATABASE_URL=postgres://app:"+pw+"@/TAIL"+pw+"@127.0.0.1:1/app"), []string{"list"}, "PGBACKUPS_DATABASE_URL: holds more than one '@'"},
		// An AWS secret key may start with '/': not taken for a path.
		{append(env, "PGBACKUPS_S3_SECRET_ACCESS_KEY_FILE=/"+pw+"+K7MDENG"), []string{"list"}, "PGBACKUPS_S3_SECRET_ACCESS_KEY_FILE: cannot read the file it names (not shown"},
	} {
		r := run(t, tc.env, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.says) || strings.Contains(r.stderr+r.stdout, pw) {
			t.Errorf("%v %v: exit %d, want 2 saying %q without the password:\n%s", tc.env, tc.args, r.code, tc.says, r.stderr)
		}
	}
	// A socket directory holding an '@' is no password: accepted.
	if r := run(t, append(env, "PGBACKUPS_DATABASE_URL=host=/run/user@corp/pg dbname=app", "PGBACKUPS_SCHEDULE="), "list"); r.code != 0 {
		t.Errorf("a socket directory with an '@': exit %d\n%s", r.code, r.stderr)
	}
	// The same for a --to URL on restore's command line.
	r := run(t, env, "restore", "latest", "--to", "postgres://app:"+pw+"@TAIL"+pw+"@127.0.0.1:1/app", "--confirm", "app")
	if r.code == 0 || !strings.Contains(r.stderr, "holds more than one '@'") || strings.Contains(r.stderr, pw) {
		t.Errorf("restore --to with an unencoded @: exit %d:\n%s", r.code, r.stderr)
	}
}
