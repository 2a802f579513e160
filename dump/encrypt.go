package dump

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/pgbackups/pgbackups/storage"
)

// EncryptionAge is a manifest's Encryption for a backup whose stored
// objects (data and globals) are age-encrypted (age-encryption.org/v1)
// after compression: what storage holds is age(zstd(archive)).
const EncryptionAge = "age"

// IdentityVar names the setting that gives restore its age identities,
// for errors that tell an operator what to set.
const IdentityVar = "PGBACKUPS_AGE_IDENTITY_FILE"

// ErrNoIdentity means an encrypted backup was read without identities.
var ErrNoIdentity = errors.New("the backup is encrypted, and no age identity was given")

// ErrWrongIdentity means none of the identities given opens the backup.
var ErrWrongIdentity = errors.New("none of the age identities given opens the backup")

// Recipients is what capture encrypts to: age public keys.
type Recipients []age.Recipient

// Names returns the recipients' public keys, as a manifest records them.
func (rs Recipients) Names() []string {
	var out []string
	for _, r := range rs {
		if s, ok := r.(fmt.Stringer); ok {
			out = append(out, s.String())
		}
	}
	return out
}

// decryptReader marks age's errors (a chunk that does not authenticate),
// so that a reader further on can tell them from its own.
type decryptReader struct{ r io.Reader }

func (d decryptReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = decryptError{err}
	}
	return n, err
}

// decryptError is an error of age's payload.
type decryptError struct{ err error }

func (e decryptError) Error() string { return "decrypt: " + e.err.Error() }
func (e decryptError) Unwrap() error { return e.err }

// ShortKeys lists age public keys for a message: a post-quantum one is
// some 2,000 characters, shown by its start and end (enough to tell keys
// apart; the manifest keeps each whole).
func ShortKeys(keys []string) string {
	short := make([]string, len(keys))
	for i, k := range keys {
		if len(k) > 80 {
			k = k[:24] + "..." + k[len(k)-12:]
		}
		short[i] = k
	}
	return strings.Join(short, ", ")
}

// encrypting returns a writer that age-encrypts to rs into w, or w itself
// (with a no-op Close) when rs is empty. Close writes the last chunk.
// Nothing reaches w before the first Write or Close: w may be a pipe whose
// reader starts later.
func encrypting(w io.Writer, rs Recipients) io.WriteCloser {
	if len(rs) == 0 {
		return nopWriteCloser{w}
	}
	return &sealer{w: w, rs: rs}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// sealer starts age's stream (its header) on the first Write or Close.
type sealer struct {
	w  io.Writer
	rs Recipients
	ew io.WriteCloser
}

func (s *sealer) start() error {
	if s.ew != nil {
		return nil
	}
	ew, err := age.Encrypt(s.w, s.rs...)
	if err != nil {
		return fmt.Errorf("age: %w", err)
	}
	s.ew = ew
	return nil
}

func (s *sealer) Write(p []byte) (int, error) {
	if err := s.start(); err != nil {
		return 0, err
	}
	return s.ew.Write(p)
}

func (s *sealer) Close() error {
	if err := s.start(); err != nil {
		return err
	}
	return s.ew.Close()
}

// publicKey returns the public key of an identity pgbackups can name: the
// native X25519 and hybrid kinds.
func publicKey(id age.Identity) string {
	switch id := id.(type) {
	case *age.X25519Identity:
		return id.Recipient().String()
	case *age.HybridIdentity:
		return id.Recipient().String()
	}
	return ""
}

// decrypting returns src decrypted with ids when m's objects are
// encrypted, else src. It reads the age header from src, so a header that
// storage failed to deliver is src's error (the caller's hashingReader
// holds it); an unreadable header, or one whose recipient stanzas the
// right identity does not open, is damage.
func decrypting(src io.Reader, m storage.Manifest, key string, ids []age.Identity) (io.Reader, error) {
	switch m.Encryption {
	case "":
		return src, nil
	case EncryptionAge:
	default:
		return nil, fmt.Errorf("%s is encrypted with %q, which this version of pgbackups cannot read", key, m.Encryption)
	}
	to := "recipients the manifest does not name"
	if len(m.EncryptedTo) > 0 {
		to = ShortKeys(m.EncryptedTo)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: %s is encrypted to %s; set %s to the file holding the matching age identity (AGE-SECRET-KEY-1...)",
			ErrNoIdentity, key, to, IdentityVar)
	}
	r, err := age.Decrypt(src, ids...)
	if err == nil {
		return decryptReader{r}, nil
	}
	if nm := (*age.NoIdentityMatchError)(nil); errors.As(err, &nm) {
		var have []string
		for _, id := range ids {
			if pk := publicKey(id); pk != "" {
				have = append(have, pk)
				if slices.Contains(m.EncryptedTo, pk) {
					// The right key, and it does not open the stanza
					// that names it: the header was changed.
					return nil, fmt.Errorf("%w: %s: its age header does not open with the identity for %s, a recipient it was encrypted to", ErrCorrupt, key, ShortKeys([]string{pk}))
				}
			}
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("%w: %s is encrypted to %s", ErrWrongIdentity, key, to)
		}
		return nil, fmt.Errorf("%w: %s is encrypted to %s; the identities in %s are for %s", ErrWrongIdentity, key, to, IdentityVar, ShortKeys(have))
	}
	return nil, fmt.Errorf("%w: %s: age header: %v", ErrCorrupt, key, err)
}
