package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestEncryptedBackupsEndToEnd backs up to S3 encrypted to an age public
// key, as a daemon host configured with PGBACKUPS_AGE_RECIPIENTS alone
// would, then reads the backup back as an operator holding the identity
// file: info, restore, download, verify. Without the file, each read says
// which variable to set and changes nothing.
func TestEncryptedBackupsEndToEnd(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 1000)
	srv := testenv.S3(t)
	key, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Recipient().String()
	idFile := filepath.Join(t.TempDir(), "backup-key.txt")
	if err := os.WriteFile(idFile, []byte("# created: today\n# public key: "+pub+"\n"+key.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A copy others may read: used once, and warned of.
	looseFile := filepath.Join(t.TempDir(), "loose-key.txt")
	if err := os.WriteFile(looseFile, []byte(key.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(looseFile, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	base := append(srv.Env(), "PGBACKUPS_DATABASE_URL="+pg.URL(src))
	backupEnv := append(slices.Clone(base), "PGBACKUPS_AGE_RECIPIENTS="+pub)
	readEnv := append(slices.Clone(base), "PGBACKUPS_AGE_IDENTITY_FILE="+idFile)

	r := run(t, backupEnv, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	id := lastLine(r.stdout)
	if !strings.Contains(r.stderr, "(age-encrypted to 1 key)") {
		t.Errorf("capture's summary does not say the backup is encrypted:\n%s", r.stderr)
	}
	ms := listJSON(t, base)
	if len(ms) != 1 || ms[0].Encryption != "age" || !slices.Equal(ms[0].EncryptedTo, []string{pub}) {
		t.Fatalf("list --json = %+v, want one backup encrypted with age to %s", ms, pub)
	}
	if r := run(t, base, "info", id); r.code != 0 || !strings.Contains(r.stdout, "Encrypted") || !strings.Contains(r.stdout, pub) {
		t.Fatalf("info: exit %d, want the encryption and its key shown\n%s%s", r.code, r.stdout, r.stderr)
	}

	t.Run("without the identity", func(t *testing.T) {
		target := pg.CreateDB(t)
		// A setting missing: exit 2, as for any configuration error.
		r := run(t, base, "restore", id, "--to", pg.URL(target), "--confirm", target, "--with-globals")
		if r.code != 2 || !strings.Contains(r.stderr, "PGBACKUPS_AGE_IDENTITY_FILE") || !strings.Contains(r.stderr, pub) || !strings.Contains(r.stderr, "nothing was changed") {
			t.Fatalf("restore without the identity: exit %d, want 2 naming the variable and the key\n%s", r.code, r.stderr)
		}
		out := filepath.Join(t.TempDir(), "b.dump")
		if r := run(t, base, "download", id, "-o", out); r.code != 2 || !strings.Contains(r.stderr, "PGBACKUPS_AGE_IDENTITY_FILE") {
			t.Fatalf("download without the identity: exit %d\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("download left %s: %v", out, err)
		}
	})

	t.Run("with the identity", func(t *testing.T) {
		target := pg.CreateDB(t)
		r := run(t, readEnv, "restore", id, "--to", pg.URL(target), "--confirm", target)
		if r.code != 0 {
			t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
		}
		if n := pg.QueryString(t, target, `SELECT count(*)::text FROM app.users`); n != "1000" {
			t.Fatalf("restored %s users, want 1000", n)
		}
		out := filepath.Join(t.TempDir(), "b.dump")
		if r := run(t, readEnv, "download", id, "-o", out); r.code != 0 {
			t.Fatalf("download: exit %d\n%s", r.code, r.stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil || !bytes.HasPrefix(b, []byte("PGDMP")) {
			t.Fatalf("download wrote no pg_dump archive: %v", err)
		}
		if r := run(t, readEnv, "verify", id); r.code != 0 || strings.Contains(r.stderr, "readable by its group or by others") {
			t.Fatalf("verify: exit %d\n%s", r.code, r.stderr)
		}
		if r := run(t, append(slices.Clone(base), "PGBACKUPS_AGE_IDENTITY_FILE="+looseFile), "verify", id); r.code != 0 || !strings.Contains(r.stderr, "is readable by its group or by others") {
			t.Fatalf("verify with a 0644 identity file: exit %d, want 0 and a warning\n%s", r.code, r.stderr)
		}
		// A file whose name says what it holds is a path, not the key.
		named := filepath.Join(t.TempDir(), "age-secret-key.txt")
		if b, err := os.ReadFile(idFile); err != nil || os.WriteFile(named, b, 0o600) != nil {
			t.Fatal(err)
		}
		if r := run(t, append(slices.Clone(base), "PGBACKUPS_AGE_IDENTITY_FILE="+named), "verify", id); r.code != 0 {
			t.Fatalf("verify with an identity file named age-secret-key.txt: exit %d\n%s", r.code, r.stderr)
		}
		r = run(t, readEnv, "url", id)
		if r.code != 0 || !strings.Contains(r.stderr, `age -d -i "$PGBACKUPS_AGE_IDENTITY_FILE"`) {
			t.Fatalf("url: exit %d, want the age step in its pipeline\n%s", r.code, r.stderr)
		}
		// Where the variable is unset (the host that hands out URLs), a
		// pipeline naming it would read "".
		if r := run(t, base, "url", id); r.code != 0 || !strings.Contains(r.stderr, "age -d -i KEYFILE") {
			t.Fatalf("url without the identity set: exit %d, want a KEYFILE placeholder\n%s", r.code, r.stderr)
		}
		for _, s := range []string{r.stdout, r.stderr} {
			if strings.Contains(s, key.String()) {
				t.Fatalf("the identity appears in url's output")
			}
		}
	})

	t.Run("bad settings", func(t *testing.T) {
		garbage := filepath.Join(t.TempDir(), "garbage.txt")
		if err := os.WriteFile(garbage, []byte("not-a-key-hunter2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		pq, err := age.GenerateHybridIdentity()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			env          []string
			cmd          string
			says, secret string
		}{
			{[]string{"PGBACKUPS_AGE_RECIPIENTS=age1nope"}, "list", "PGBACKUPS_AGE_RECIPIENTS: \"age1nope\" is not an age public key", ""},
			{[]string{"PGBACKUPS_AGE_RECIPIENTS=" + key.String()}, "list", "the secret key", key.String()},
			{[]string{"PGBACKUPS_AGE_RECIPIENTS=\"" + strings.ToLower(key.String()) + "\""}, "list", "the secret key", strings.ToLower(key.String())},
			{[]string{"PGBACKUPS_AGE_RECIPIENTS= , "}, "capture", "holds no key", ""},
			// age refuses to mix post-quantum and classic keys when it
			// encrypts: said at start-up, not by every backup failing.
			{[]string{"PGBACKUPS_AGE_RECIPIENTS=" + pub + "," + pq.Recipient().String()}, "capture", "cannot be used together", ""},
			{[]string{"PGBACKUPS_AGE_IDENTITY_FILE=" + garbage}, "download", "line 1 is not an age identity", "hunter2"},
			{[]string{"PGBACKUPS_AGE_IDENTITY_FILE=" + idFile + ".missing"}, "download", "no such file", ""},
			{[]string{"PGBACKUPS_AGE_IDENTITY_FILE=" + t.TempDir()}, "verify", "is not a regular file", ""},
			// The identity itself where its file's path goes.
			{[]string{"PGBACKUPS_AGE_IDENTITY_FILE=" + key.String()}, "verify", "holds an age identity itself", key.String()},
			// Quotes an env file kept: said, whatever the check.
			{[]string{"PGBACKUPS_AGE_RECIPIENTS=\"" + pub + "\""}, "list", "it is in quotes: remove them", ""},
			{[]string{"PGBACKUPS_SCHEDULE='02:00 UTC'"}, "list", "it is in quotes: remove them", ""},
		} {
			r := run(t, append(slices.Clone(base), tc.env...), tc.cmd)
			if r.code != 2 || !strings.Contains(r.stderr, tc.says) || (tc.secret != "" && strings.Contains(r.stderr, tc.secret)) {
				t.Errorf("%s with %v: exit %d, want 2 saying %q and no secret\n%s", tc.cmd, tc.env, r.code, tc.says, r.stderr)
			}
		}
		// Only the commands that read backups read the identity file: a
		// daemon host, or list, never needs it.
		if r := run(t, append(slices.Clone(base), "PGBACKUPS_AGE_IDENTITY_FILE="+idFile+".missing"), "list"); r.code != 0 {
			t.Errorf("list with a missing identity file: exit %d, want 0\n%s", r.code, r.stderr)
		}
	})

	t.Run("unencrypted backup read with an identity", func(t *testing.T) {
		r := run(t, base, "capture")
		if r.code != 0 {
			t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
		}
		plain := lastLine(r.stdout)
		if r := run(t, readEnv, "verify", plain); r.code != 0 || !strings.Contains(r.stderr, "this backup is not encrypted") {
			t.Fatalf("verify of an unencrypted backup with an identity set: exit %d, want 0 and a warning\n%s", r.code, r.stderr)
		}
		// list shows which backups are encrypted once any is.
		r = run(t, base, "list")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 3 || !strings.HasSuffix(lines[0], "ENCRYPTED") {
			t.Fatalf("list: exit %d, want a header with ENCRYPTED and two backups\n%s", r.code, r.stdout)
		}
		for _, l := range lines[1:] {
			want := "age"
			if strings.HasPrefix(l, plain) {
				want = "no"
			}
			if f := strings.Fields(l); f[len(f)-1] != want {
				t.Errorf("list row %q: want encrypted %q", l, want)
			}
		}
	})
}
