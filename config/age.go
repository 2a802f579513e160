package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
)

// Recipients parses PGBACKUPS_AGE_RECIPIENTS: the age public keys new
// backups are encrypted to; none when it is unset.
func (c *Config) Recipients() ([]age.Recipient, error) {
	if c.AgeRecipients == "" {
		return nil, nil
	}
	var out []age.Recipient
	var seen []string
	for _, f := range strings.FieldsFunc(c.AgeRecipients, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		if strings.Contains(strings.ToUpper(f), "SECRET-KEY") {
			// Not echoed: it is the secret half.
			return nil, errors.New("holds an age identity (AGE-SECRET-KEY-...), the secret key: give its public key (age1..., `age-keygen -y FILE` prints it), and keep the identity off this host")
		}
		if slices.Contains(seen, f) {
			continue
		}
		rs, err := age.ParseRecipients(strings.NewReader(f))
		if err != nil || len(rs) != 1 {
			hint := quotedHint(f)
			switch {
			case strings.HasPrefix(f, "ssh-"):
				hint = " (SSH keys are not supported: use a native age key from age-keygen)"
			case strings.HasPrefix(f, "/"):
				hint = " (a file's path: give the public key itself, which `age-keygen -y FILE` prints)"
			}
			return nil, fmt.Errorf("%q is not an age public key (age1...)%s", f, hint)
		}
		out = append(out, rs[0])
		seen = append(seen, f)
	}
	if len(out) == 0 {
		// An empty $(cat key.pub) must not turn encryption off unseen.
		return nil, errors.New("is set but holds no key: unset it to store backups unencrypted")
	}
	// age refuses some mixes (post-quantum keys with classic ones) when
	// it encrypts: found here, not at the first backup.
	w, err := age.Encrypt(io.Discard, out...)
	if err != nil {
		return nil, fmt.Errorf("these keys cannot be used together: %v", err)
	}
	w.Close()
	return out, nil
}

// quotedHint is a hint for a value in quotes, as an env file written for a
// shell holds them: systemd strips them, a plain loader does not.
func quotedHint(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return " (it is in quotes: remove them)"
	}
	return ""
}

// maxIdentityFile bounds what is read from PGBACKUPS_AGE_IDENTITY_FILE:
// identity files are a few lines.
const maxIdentityFile = 1 << 20

// Identities reads PGBACKUPS_AGE_IDENTITY_FILE: the age identities that
// open encrypted backups; none when it is unset. Its errors never quote
// the file's contents.
func (c *Config) Identities() ([]age.Identity, error) {
	path := c.AgeIdentityFile
	if path == "" {
		return nil, nil
	}
	if strings.HasPrefix(strings.ToUpper(strings.Trim(path, " \t\"'")), "AGE-SECRET-KEY-") {
		// Not echoed: the identity itself, put where its file's path goes.
		return nil, errors.New("holds an age identity itself (not shown): put it in a file, as age-keygen -o does, and name that file here")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, unreadablePath(path, err, "it is no absolute path")
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIdentityFile {
		return nil, fmt.Errorf("%s is over %d bytes: not an age identity file", path, maxIdentityFile)
	}
	var ids []age.Identity
	for i, line := range strings.Split(strings.TrimPrefix(string(b), "\uFEFF"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parsed, err := age.ParseIdentities(strings.NewReader(line))
		if err != nil || len(parsed) != 1 {
			what := "an age identity (AGE-SECRET-KEY-1...)"
			if strings.HasPrefix(line, "age1") {
				what += ": it holds a public key, the recipient; the identity is the secret key age-keygen wrote to its file"
			}
			return nil, fmt.Errorf("%s: line %d is not %s", path, i+1, what)
		}
		ids = append(ids, parsed[0])
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s holds no age identity", path)
	}
	return ids, nil
}
