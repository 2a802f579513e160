package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// What a manifest may say is checked twice. On reading (check), a manifest
// is refused outright for what no pgbackups ever wrote: another id than its
// folder's, no or an unknown status, an object key outside its own folder,
// a negative size, a checksum that is not hex. Such a manifest is listed as
// unreadable, retention leaves it alone, and `latest` stops at it, rather
// than it being taken for a failed backup (which prune removes) or a good
// one (which retention counts as kept). Before its data is read
// (CheckData), a completed backup must also name its data object and carry
// sha256 digests to check it against.

// ErrNewerFormat is wrapped by Catalog.Manifest's error for a backup stored
// in a way this version does not know (another compression, encryption or
// archive format): a newer pgbackups wrote it. Read as unreadable, it is
// left alone by retention and stops latest, where taken for a backup this
// version can restore it would be counted as one, and fail every read.
var ErrNewerFormat = errors.New("it was stored by a newer pgbackups, in a format this version cannot read: upgrade pgbackups")

// known reports a manifest whose stored objects this version cannot read.
func (m Manifest) known() error {
	var unknown []string
	// Each field's one known value; "" is what older manifests (and a
	// backup without encryption) say.
	for _, f := range []struct{ field, value, known string }{
		{"compression", m.Compression, "zstd"}, {"encryption", m.Encryption, "age"}, {"format", m.Format, "custom"},
	} {
		if f.value != "" && f.value != f.known {
			unknown = append(unknown, fmt.Sprintf("%s %q", f.field, f.value))
		}
	}
	if unknown == nil {
		return nil
	}
	return fmt.Errorf("%w (%s)", ErrNewerFormat, strings.Join(unknown, ", "))
}

// check reports what makes m, read from folder id, not a manifest
// pgbackups wrote: every problem found, or nil.
func (m Manifest) check(id string) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch m.ID {
	case id:
	case "":
		bad("it has no id")
	default:
		bad("it names backup %q", m.ID)
	}
	switch m.Status {
	case StatusCompleted, StatusFailed:
	case "":
		bad("it has no status")
	default:
		bad("unknown status %q (want %s or %s)", m.Status, StatusCompleted, StatusFailed)
	}
	for _, k := range []struct{ field, key string }{{"data_key", m.DataKey}, {"globals_key", m.GlobalsKey}} {
		if k.key != "" && !inFolder(id, k.key) {
			bad("%s %q is outside the backup's own folder %s/", k.field, k.key, id)
		}
	}
	for _, n := range []struct {
		field string
		n     int64
	}{{"dump_bytes", m.DumpBytes}, {"stored_bytes", m.StoredBytes}, {"database_bytes", m.DatabaseBytes}} {
		if n.n < 0 {
			bad("%s is negative (%d)", n.field, n.n)
		}
	}
	for _, s := range []struct{ field, sum string }{{"sha256", m.SHA256}, {"dump_sha256", m.DumpSHA256}, {"globals_sha256", m.GlobalsSHA256}} {
		if s.sum != "" && !isHex(s.sum) {
			bad("%s %q is not a hex digest", s.field, s.sum)
		}
	}
	if errs == nil {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// CheckData reports why m's data object cannot be read and checked: a
// backup that did not complete, or a manifest that names no data object in
// its own folder or has no sha256 digests to check it against. Nothing is
// read from storage.
func (m Manifest) CheckData() error {
	if !m.OK() {
		why := ""
		if m.Error != "" {
			why = ": " + m.Error
		}
		return fmt.Errorf("it did not complete (status %s%s); there is nothing to read", m.Status, why)
	}
	var errs []string
	switch {
	case m.DataKey == "":
		errs = append(errs, "it names no data object (data_key is empty)")
	case !inFolder(m.ID, m.DataKey):
		errs = append(errs, fmt.Sprintf("data_key %q is outside the backup's own folder %s/", m.DataKey, m.ID))
	}
	for _, s := range []struct{ field, sum string }{{"sha256", m.SHA256}, {"dump_sha256", m.DumpSHA256}} {
		if !isSHA256(s.sum) {
			errs = append(errs, fmt.Sprintf("%s %q is not a sha256 digest", s.field, s.sum))
		}
	}
	if m.StoredBytes < 0 || m.DumpBytes < 0 {
		errs = append(errs, fmt.Sprintf("negative sizes (stored_bytes %d, dump_bytes %d)", m.StoredBytes, m.DumpBytes))
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("its manifest is corrupt: %s", strings.Join(errs, "; "))
}

// CheckGlobals is CheckData for the globals object; a backup without one
// passes (the caller says what its absence means).
func (m Manifest) CheckGlobals() error {
	if m.GlobalsKey == "" {
		return nil
	}
	var errs []string
	if !inFolder(m.ID, m.GlobalsKey) {
		errs = append(errs, fmt.Sprintf("globals_key %q is outside the backup's own folder %s/", m.GlobalsKey, m.ID))
	}
	if !isSHA256(m.GlobalsSHA256) {
		errs = append(errs, fmt.Sprintf("globals_sha256 %q is not a sha256 digest", m.GlobalsSHA256))
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("its manifest is corrupt: %s", strings.Join(errs, "; "))
}

// inFolder reports whether key names an object directly in backup id's
// folder, as every object capture writes does. It refuses "..", nested
// keys and other backups' objects: a manifest never makes pgbackups read
// outside its own backup.
func inFolder(id, key string) bool {
	name, ok := strings.CutPrefix(key, id+"/")
	return ok && name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\")
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isSHA256(s string) bool { return len(s) == 64 && isHex(s) }

// ErrDamaged is wrapped by what Damage reports, and by Entry.Damaged for
// a backup whose objects the listing shows damaged.
var ErrDamaged = errors.New("damaged")

// ErrGlobalsMissing is ErrDamaged when all that is wrong is a missing
// globals object: the data object restores, without --with-globals, into
// a cluster that has the roles and tablespaces it needs.
var ErrGlobalsMissing error = globalsMissing{}

type globalsMissing struct{}

func (globalsMissing) Error() string { return ErrDamaged.Error() }
func (globalsMissing) Unwrap() error { return ErrDamaged }

// ErrStartTime is wrapped by what CheckStart reports, and by Entry.Damaged
// for a completed backup whose start time cannot place it among the others.
var ErrStartTime = errors.New("start time not trusted")

// startSkew is how far after this host's clock a backup's start may be
// and still be taken at its word. Hosts kept by NTP differ by well under a
// second and ones without it by seconds; a VM without NTP drifts minutes.
// Beyond that the host that took it has a clock that runs ahead (or this
// one's is behind): ranked by that time, the backup is the newest for as
// long as the skew, the one retention always keeps while it deletes each
// backup taken after it, and the one `latest` restores.
const startSkew = 10 * time.Minute

// CheckStart reports why the completed backup m's start time cannot rank
// it among the others as of now: none recorded (it would rank as year 1,
// the first retention deletes), or a start more than startSkew after now.
// It wraps ErrStartTime; nil for a backup that did not complete, which
// retention does not keep for its time.
func (m Manifest) CheckStart(now time.Time) error {
	switch {
	case !m.OK():
		return nil
	case m.StartedAt.IsZero():
		return fmt.Errorf("%w: its manifest records no start time (started_at is empty): retention cannot tell how old it is", ErrStartTime)
	case m.startsAhead(now):
		return fmt.Errorf("%w: started at %s, %s after this host's clock: the clock of the host that took it runs ahead (or this one's is behind)",
			ErrStartTime, m.StartedAt.UTC().Format(time.RFC3339), m.StartedAt.Sub(now).Round(time.Second))
	}
	return nil
}

// startsAhead reports whether m started more than startSkew after now,
// completed or not.
func (m Manifest) startsAhead(now time.Time) bool { return m.StartedAt.Sub(now) > startSkew }

// damage reports what the listing objs of a backup's folder says is wrong
// with the completed backup m: its data object missing, or of another size
// than the manifest records, or its globals object missing. It reads
// nothing, so it cannot see a flipped byte (verify does); nil for a backup
// that did not complete. Without withData, the data object is not looked
// at: only the globals object.
func damage(m Manifest, objs []Object, withData bool) error {
	if !m.OK() {
		return nil
	}
	sizes := map[string]int64{}
	for _, o := range objs {
		sizes[o.Key] = o.Size
	}
	var errs []string
	switch {
	case !withData:
	case m.DataKey == "":
		// Every capture names its data object: without one there is
		// nothing to restore, and counting it as good would let retention
		// keep it in place of one that can be restored.
		errs = append(errs, "its manifest names no data object (data_key is empty)")
	default:
		switch size, ok := sizes[m.DataKey]; {
		case !ok:
			errs = append(errs, fmt.Sprintf("its data object %s is missing", m.DataKey))
		// Zero is what a manifest without sizes says: no size to compare.
		case m.StoredBytes > 0 && size != m.StoredBytes:
			errs = append(errs, fmt.Sprintf("its data object %s is %d bytes, the manifest says %d", m.DataKey, size, m.StoredBytes))
		}
	}
	kind := ErrDamaged
	if _, ok := sizes[m.GlobalsKey]; m.GlobalsKey != "" && !ok {
		if errs == nil && m.CheckData() == nil {
			kind = ErrGlobalsMissing
		}
		errs = append(errs, fmt.Sprintf("its globals object %s is missing", m.GlobalsKey))
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("%w: %s", kind, strings.Join(errs, "; "))
}

// Damage lists m's folder and reports what is wrong with the objects of
// the completed backup m, as Entry.Damaged does: before a restore changes
// anything, and for info. Objects missing along with the manifest itself
// are a backup deleted (`pgbackups delete`, retention) since m was read,
// not a damaged one: that error wraps ErrNotFound, not ErrDamaged.
func (c Catalog) Damage(ctx context.Context, m Manifest) error {
	return c.damage(ctx, m, true)
}

// GlobalsDamage is Damage of m's globals object alone, for a caller that
// has said already what makes its data object unreadable (CheckData).
func (c Catalog) GlobalsDamage(ctx context.Context, m Manifest) error {
	return c.damage(ctx, m, false)
}

func (c Catalog) damage(ctx context.Context, m Manifest, withData bool) error {
	objs, err := c.Store.List(ctx, m.ID+"/")
	if err != nil {
		return err
	}
	err = damage(m, objs, withData)
	if err != nil && !holdsManifest(objs, m.ID) {
		return fmt.Errorf("backup %s was deleted while this command read it (its manifest is gone too): %w", m.ID, ErrNotFound)
	}
	return err
}
