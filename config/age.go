package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"filippo.io/age"
)

// Recipients parses PGBACKUPS_AGE_RECIPIENTS: the age public keys new
// backups are encrypted to; none when it is unset.
func (c *Config) Recipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, f := range strings.FieldsFunc(c.AgeRecipients, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		rs, err := age.ParseRecipients(strings.NewReader(f))
		if err != nil || len(rs) != 1 {
			hint := ""
			if strings.HasPrefix(f, "AGE-SECRET-KEY-") {
				// Not echoed: it is the secret half.
				return nil, errors.New("holds an age identity (AGE-SECRET-KEY-...), the secret key: give its public key (age1..., `age-keygen -y FILE` prints it), and keep the identity off this host")
			}
			if strings.HasPrefix(f, "ssh-") {
				hint = " (SSH keys are not supported: use a native age key from age-keygen)"
			}
			return nil, fmt.Errorf("%q is not an age public key (age1...)%s", f, hint)
		}
		out = append(out, rs[0])
	}
	return out, nil
}

// Identities reads PGBACKUPS_AGE_IDENTITY_FILE: the age identities that
// open encrypted backups; none when it is unset. Its errors never quote
// the file's contents.
func (c *Config) Identities() ([]age.Identity, error) {
	if c.AgeIdentityFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.AgeIdentityFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist", c.AgeIdentityFile)
		}
		return nil, err
	}
	var ids []age.Identity
	for i, line := range strings.Split(string(b), "\n") {
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
			return nil, fmt.Errorf("%s: line %d is not %s", c.AgeIdentityFile, i+1, what)
		}
		ids = append(ids, parsed[0])
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s holds no age identity", c.AgeIdentityFile)
	}
	return ids, nil
}
