package dump_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

func newIdentity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEncryptedBackup captures a backup encrypted to an age key and reads
// it back every way pgbackups reads one: restore, verify, download, and
// the globals. Without the key, or with another, each read fails before
// anything changes and names the key the backup needs.
func TestEncryptedBackup(t *testing.T) {
	pg := testenv.PG(t)
	src := pg.CreateDB(t)
	pg.SeedRich(t, src, 1000)
	ctx := context.Background()
	st := fileStore(t)
	key, other := newIdentity(t), newIdentity(t)
	o := options(t, pg, src, st)
	o.Recipients = dump.Recipients{key.Recipient()}
	m, err := dump.Capture(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Recipient().String()
	if m.Encryption != dump.EncryptionAge || !slices.Equal(m.EncryptedTo, []string{pub}) {
		t.Fatalf("manifest encryption %q to %v, want age to %s", m.Encryption, m.EncryptedTo, pub)
	}
	data, err := os.ReadFile(st.Location(m.DataKey))
	if err != nil {
		t.Fatal(err)
	}
	globals, err := os.ReadFile(st.Location(m.GlobalsKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"data": data, "globals": globals} {
		if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
			t.Errorf("stored %s object is not age-encrypted: starts %q", name, b[:min(len(b), 24)])
		}
	}
	ids := []age.Identity{key}

	t.Run("restore", func(t *testing.T) {
		target := pg.CreateDB(t)
		res, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Identities: ids, WithGlobals: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows == 0 {
			t.Fatalf("restored %d rows", res.Rows)
		}
		if n := pg.QueryString(t, target, `SELECT count(*)::text FROM app.users`); n != "1000" {
			t.Fatalf("restored %s users, want 1000", n)
		}
		// In parallel, through the decrypted temporary archive.
		target = pg.CreateDB(t)
		if _, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Identities: ids, Jobs: 2, TempDir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		if n := pg.QueryString(t, target, `SELECT count(*)::text FROM billing.invoices`); n != "5000" {
			t.Fatalf("restored %s invoices with --jobs 2, want 5000", n)
		}
	})

	t.Run("download and verify", func(t *testing.T) {
		var out bytes.Buffer
		n, err := dump.CopyBackup(ctx, st, m, ids, &out)
		if err != nil {
			t.Fatal(err)
		}
		if n != m.DumpBytes || !bytes.HasPrefix(out.Bytes(), []byte("PGDMP")) {
			t.Fatalf("download wrote %d bytes starting %q, want %d bytes of a pg_dump archive", n, out.Bytes()[:min(out.Len(), 5)], m.DumpBytes)
		}
		if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, Identities: ids}); err != nil {
			t.Fatal(err)
		}
		sql, err := dump.ReadGlobals(ctx, st, m, ids)
		if err != nil || !strings.Contains(string(sql), "CREATE ROLE") {
			t.Fatalf("globals: %v, %.80q", err, sql)
		}
	})

	for name, tc := range map[string]struct {
		ids  []age.Identity
		want error
		says string
	}{
		"no identity":    {nil, dump.ErrNoIdentity, dump.IdentityVar},
		"wrong identity": {[]age.Identity{other}, dump.ErrWrongIdentity, other.Recipient().String()},
	} {
		t.Run(name, func(t *testing.T) {
			target := pg.CreateDB(t)
			_, err := dump.Restore(ctx, dump.RestoreOptions{Store: st, Manifest: m, Target: conn(t, pg.URL(target)), PgBinDir: pg.BinDir, Identities: tc.ids, WithGlobals: true})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), pub) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "nothing was changed") {
				t.Fatalf("restore: %v, want %v naming %s and %s, nothing changed", err, tc.want, pub, tc.says)
			}
			if strings.Contains(err.Error(), key.String()) || strings.Contains(err.Error(), other.String()) {
				t.Fatalf("the error shows a secret key: %v", err)
			}
			if _, err := dump.CopyBackup(ctx, st, m, tc.ids, &bytes.Buffer{}); !errors.Is(err, tc.want) {
				t.Errorf("download: %v, want %v", err, tc.want)
			}
			if _, err := dump.Verify(ctx, dump.VerifyOptions{Store: st, Manifest: m, PgBinDir: pg.BinDir, Identities: tc.ids}); !errors.Is(err, tc.want) {
				t.Errorf("verify: %v, want %v", err, tc.want)
			}
		})
	}

	// Damage is told from a wrong key: the payload's chunks are
	// authenticated, and a header the right key no longer opens is damage.
	header := bytes.Index(data, []byte("\n---"))
	stanza := bytes.Index(data, []byte("-> X25519 "))
	if header < 0 || stanza < 0 {
		t.Fatalf("no age header in the stored object")
	}
	damage := map[string]int{
		"payload":        header + (len(data)-header)/2,
		"header stanza":  stanza + len("-> X25519 ") + 3,
		"last chunk tag": len(data) - 3,
	}
	for name, at := range damage {
		t.Run("damaged "+name, func(t *testing.T) {
			b := bytes.Clone(data)
			b[at] ^= 0x01
			if err := os.WriteFile(st.Location(m.DataKey), b, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(st.Location(m.DataKey), data, 0o600) })
			_, err := dump.CopyBackup(ctx, st, m, ids, &bytes.Buffer{})
			if !errors.Is(err, dump.ErrCorrupt) {
				t.Fatalf("download: %v, want ErrCorrupt", err)
			}
			// Said as what failed: age's check, not zstd.
			if name == "payload" && (!strings.Contains(err.Error(), "decrypt:") || strings.Contains(err.Error(), "decompress")) {
				t.Errorf("download of a changed payload: %v, want it called a decryption failure", err)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		// Cut at a chunk's end (64 KiB of payload): only age's last-chunk
		// flag tells this from a whole object.
		if err := os.WriteFile(st.Location(m.DataKey), data[:len(data)-1], 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(st.Location(m.DataKey), data, 0o600) })
		if _, err := dump.CopyBackup(ctx, st, m, ids, &bytes.Buffer{}); !errors.Is(err, dump.ErrCorrupt) || strings.Count(err.Error(), "decrypt:") > 1 {
			t.Fatalf("download: %v, want ErrCorrupt, said once", err)
		}
	})
}

// TestShortKeys: a post-quantum public key is some 2,000 characters, and
// messages naming it were mostly key.
func TestShortKeys(t *testing.T) {
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	classic := newIdentity(t).Recipient().String()
	long := pq.Recipient().String()
	got := dump.ShortKeys([]string{classic, long})
	if !strings.HasPrefix(got, classic+", age1pq1") || !strings.HasSuffix(got, long[len(long)-12:]) || len(got) > len(classic)+60 {
		t.Fatalf("ShortKeys = %q", got)
	}
}
