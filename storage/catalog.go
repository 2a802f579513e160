package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Backup statuses. Only StatusCompleted is a backup anyone may restore.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// TableCount is one table's row count recorded at capture time.
type TableCount struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
}

// Manifest describes one backup. It is written last: a data object without
// a manifest is never listed as a backup. Field names are a stable JSON API.
type Manifest struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Database    string `json:"database"`
	Host        string `json:"host,omitempty"`
	SystemID    string `json:"system_identifier,omitempty"` // the cluster's (pg_control_system), kept by its physical replicas
	DatabaseOID uint32 `json:"database_oid,omitempty"`      // pg_database's: another after a DROP and CREATE DATABASE
	// UserTables is how many tables of its own (not an extension's) the
	// database had at capture; nil in manifests of older pgbackups.
	UserTables       *int64    `json:"user_tables,omitempty"`
	ServerVersion    string    `json:"server_version"`
	ServerVersionNum int       `json:"server_version_num,omitempty"`
	PgDumpVersion    string    `json:"pg_dump_version"`
	StartedAt        time.Time `json:"started_at"`
	FinishedAt       time.Time `json:"finished_at"`
	DatabaseBytes    int64     `json:"database_bytes,omitempty"`
	DumpBytes        int64     `json:"dump_bytes"`
	StoredBytes      int64     `json:"stored_bytes"`
	SHA256           string    `json:"sha256"`      // of the stored (compressed) object
	DumpSHA256       string    `json:"dump_sha256"` // of the pg_dump archive, what download writes
	Compression      string    `json:"compression"`
	CompressionLevel int       `json:"compression_level"`
	Format           string    `json:"format"` // pg_dump --format
	// Encryption is "age" when the stored objects (data and globals) are
	// age-encrypted after compression, "" when they are not; EncryptedTo
	// lists the age public keys they were encrypted to.
	Encryption       string       `json:"encryption,omitempty"`
	EncryptedTo      []string     `json:"encrypted_to,omitempty"`
	DataKey          string       `json:"data_key,omitempty"`
	GlobalsKey       string       `json:"globals_key,omitempty"`
	GlobalsSHA256    string       `json:"globals_sha256,omitempty"`
	Tables           []TableCount `json:"tables,omitempty"`
	TableCountMethod string       `json:"table_count_method,omitempty"`
	// LargeObjects is how many large objects the archive holds; nil when
	// not counted (a backup of an older pgbackups, an archive the scan
	// could not read), which is not zero.
	LargeObjects *int64 `json:"large_objects,omitempty"`
	Source       string `json:"source,omitempty"` // "primary" or "standby"
	Error        string `json:"error,omitempty"`
	// Stopped marks a failed backup the operator stopped (a signal to
	// capture, the daemon's shutdown): no failure of the backup, and no
	// reason for a daemon reading it at start-up to say it is failing.
	Stopped          bool     `json:"stopped,omitempty"`
	Warnings         []string `json:"warnings,omitempty"`
	PgbackupsVersion string   `json:"pgbackups_version,omitempty"`
}

// Duration is how long the capture took.
func (m Manifest) Duration() time.Duration { return m.FinishedAt.Sub(m.StartedAt) }

// OK reports whether this backup completed and may be restored.
func (m Manifest) OK() bool { return m.Status == StatusCompleted }

// Object key layout: every object of a backup lives under a folder named by
// its id and carries the id in its own name too, so a file downloaded from
// an S3 browser still says which backup it is.
const (
	manifestSuffix = ".manifest.json"
	dataSuffix     = ".dump.zst"
	globalsSuffix  = ".globals.sql.zst"
)

// ManifestKey is where a backup's manifest lives.
func ManifestKey(id string) string { return id + "/" + id + manifestSuffix }

// DataKey is where a backup's compressed pg_dump archive lives.
func DataKey(id string) string { return id + "/" + id + dataSuffix }

// GlobalsKey is where a backup's compressed pg_dumpall --globals-only lives.
func GlobalsKey(id string) string { return id + "/" + id + globalsSuffix }

// idAlphabet avoids letters people confuse (i, l, o) so ids read aloud well.
const idAlphabet = "0123456789abcdefghjkmnpqrstuvwxyz"

// NewID returns a backup id: the UTC start time, then four random
// characters, e.g. 20261125-020000-k3f9. Ids sort by time, are unique across
// replicas starting in the same second, and are easy to type.
func NewID(t time.Time) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	suffix := make([]byte, len(b))
	for i, c := range b {
		suffix[i] = idAlphabet[int(c)%len(idAlphabet)]
	}
	return t.UTC().Format("20060102-150405") + "-" + string(suffix)
}

// ValidID reports whether s has the shape NewID produces.
func ValidID(s string) bool {
	if len(s) != len("20060102-150405-xxxx") {
		return false
	}
	if _, err := time.Parse("20060102-150405", s[:15]); err != nil || s[15] != '-' {
		return false
	}
	for _, c := range s[16:] {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	return true
}

// ErrNoBackups is returned by Resolve("latest") when nothing has completed.
var ErrNoBackups = errors.New("no completed backups")

// Catalog reads and writes backups as objects in a Store.
type Catalog struct {
	Store Store
	// Now is the clock backups' start times are checked against
	// (Manifest.CheckStart) by Entries, Newest and Resolve; nil is
	// time.Now. Prune checks them against PruneOptions.Now.
	Now func() time.Time
}

func (c Catalog) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// WriteManifest stores m as FitManifest returns it; it is the last write of
// a capture.
func (c Catalog) WriteManifest(ctx context.Context, m Manifest) error {
	_, b, err := fitManifest(m)
	if err != nil {
		return err
	}
	_, err = c.Store.Put(ctx, ManifestKey(m.ID), bytes.NewReader(b))
	return err
}

// A stored manifest is at most maxManifestBytes, where earlier versions
// stopped reading, so an older pgbackups still reads every one. A read
// takes up to manifestReadLimit, well above, so that manifests stored
// before WriteManifest kept to the bound (with the row counts of 300,000
// tables or more) read back too. It is a limit still: Entries reads every
// manifest in the store.
const (
	maxManifestBytes  = 16 << 20
	manifestReadLimit = 64 << 20
)

// FitManifest returns m as WriteManifest stores it. A manifest holds one
// row count per table, and a database with 100,000 tables or partitions or
// more (as names are long) would take it past maxManifestBytes. So such a
// manifest is stored compact, about half the size; past the bound still,
// without its row counts (only info and verify use them: the backup must
// stay readable) and with a warning saying so. A capture can call it
// before WriteManifest, to report that warning with its others.
func FitManifest(m Manifest) Manifest {
	fit, _, err := fitManifest(m)
	if err != nil {
		return m // WriteManifest reports it
	}
	return fit
}

// fitManifest returns m as stored, and its encoding.
func fitManifest(m Manifest) (Manifest, []byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil && len(b) >= maxManifestBytes {
		b, err = json.Marshal(m)
	}
	if err == nil && len(b) >= maxManifestBytes && len(m.Tables) > 0 {
		m.Warnings = append(slices.Clip(m.Warnings), fmt.Sprintf("no row counts recorded: those of %d tables would take the manifest past %d MiB", len(m.Tables), maxManifestBytes>>20))
		m.Tables, m.TableCountMethod = nil, ""
		b, err = json.MarshalIndent(m, "", "  ")
	}
	if err == nil && len(b) >= maxManifestBytes {
		err = fmt.Errorf("backup %s: manifest of %d bytes is over %d MiB", m.ID, len(b), maxManifestBytes>>20)
	}
	if err != nil {
		return m, nil, err
	}
	return m, append(b, '\n'), nil
}

// Manifest reads one backup's manifest.
func (c Catalog) Manifest(ctx context.Context, id string) (Manifest, error) {
	if !ValidID(id) {
		return Manifest{}, fmt.Errorf("%q is not a backup id (they look like 20261125-020000-k3f9; try `pgbackups list`)", id)
	}
	rc, err := c.Store.Get(ctx, ManifestKey(id))
	if errors.Is(err, ErrNotFound) {
		return Manifest{}, fmt.Errorf("backup %s: no such backup (no manifest at %s): %w", id, ManifestKey(id), ErrNotFound)
	}
	if err != nil {
		return Manifest{}, err
	}
	defer rc.Close()
	return decodeManifest(rc, id)
}

func decodeManifest(r io.Reader, id string) (Manifest, error) {
	var m Manifest
	lr := &io.LimitedReader{R: r, N: manifestReadLimit}
	if err := json.NewDecoder(lr).Decode(&m); err != nil {
		if lr.N == 0 {
			err = fmt.Errorf("over the %d MiB a manifest may take", manifestReadLimit>>20)
		}
		return Manifest{}, fmt.Errorf("backup %s: manifest is corrupt: %w", id, err)
	}
	if err := m.known(); err != nil && m.OK() {
		// A failed backup has nothing to read: passed over as any failure.
		return Manifest{}, fmt.Errorf("backup %s: %w", id, err)
	}
	if err := m.check(id); err != nil {
		return Manifest{}, fmt.Errorf("backup %s: manifest is corrupt: %w", id, err)
	}
	return m, nil
}

// Entry is one id found in storage: its manifest if it has one, and the
// objects stored under it.
type Entry struct {
	ID       string
	Manifest *Manifest // nil: no manifest (an orphan or a capture in progress)
	Err      error     // the manifest exists but could not be read
	// Damaged says why a completed backup is not one retention may count
	// as good (nor delete): what the listing shows is wrong with its
	// objects, its data object missing or not the size its manifest
	// records, its globals object missing (wrapping ErrDamaged); or a
	// start time that cannot rank it, none or ahead of this host's clock
	// (wrapping ErrStartTime, Manifest.CheckStart).
	Damaged error
	Objects []Object
}

// BackupOf returns the id of the backup whose folder holds key directly
// (ID/name), and false for a key outside the id layout or nested deeper in
// an id's folder, which is not the backup's.
func BackupOf(key string) (string, bool) {
	id, name, ok := strings.Cut(key, "/")
	if !ok || !ValidID(id) || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return id, true
}

// manifestReaders is how many manifests Entries reads at once.
const manifestReaders = 16

// readEntry reads e's manifest, if it has one, and what it says of e's
// objects, its start checked against now. A manifest gone since the
// listing empties e.Objects or leaves what is left as an orphan's. It
// leaves the context's end to the caller.
func (c Catalog) readEntry(ctx context.Context, e *Entry, now time.Time) {
	id := e.ID
	i := slices.IndexFunc(e.Objects, func(o Object) bool { return o.Key == ManifestKey(id) })
	switch {
	case i < 0:
		// No manifest: an orphan, or a capture still writing.
		return
	case e.Objects[i].Size > manifestReadLimit:
		// Not worth reading 64 MiB of it to find out.
		e.Err = fmt.Errorf("backup %s: manifest is corrupt: %d bytes, over the %d MiB a manifest may take", id, e.Objects[i].Size, manifestReadLimit>>20)
		return
	}
	m, err := c.Manifest(ctx, id)
	var left []Object
	switch {
	case ctx.Err() != nil:
		// Entries returns the context's error.
	case errors.Is(err, ErrNotFound) && c.gone(ctx, id, &left):
		// Listed a moment ago and gone now: a delete or prune beside
		// this one removed it (manifest first) and is removing the rest.
		// What is left has no manifest, as any orphan. Called
		// unreadable, it would have list warn of a bad manifest, latest
		// stop at it, and retention leave it alone and count it for an
		// alert.
		e.Objects = left
	case err != nil:
		e.Err = err
	default:
		e.Manifest = &m
		e.Damaged = damage(m, e.Objects, true)
		if e.Damaged == nil {
			e.Damaged = m.CheckStart(now)
		}
	}
}

// byBackup groups objs by the backup whose folder holds each (BackupOf),
// in their order; keys outside the id layout are left out.
func byBackup(objs []Object) map[string][]Object {
	folders := map[string][]Object{}
	for _, o := range objs {
		if id, ok := BackupOf(o.Key); ok {
			folders[id] = append(folders[id], o)
		}
	}
	return folders
}

// holdsManifest reports whether objs hold backup id's manifest.
func holdsManifest(objs []Object, id string) bool {
	return slices.ContainsFunc(objs, func(o Object) bool { return o.Key == ManifestKey(id) })
}

// Entries lists everything stored, grouped by backup id, newest first.
// Keys outside the id layout are ignored, and so are keys nested deeper
// in an id's folder (an S3 console's folder, a copy someone put there):
// they are not the backup's, and Delete leaves them.
func (c Catalog) Entries(ctx context.Context) ([]Entry, error) {
	now := c.now()
	objs, err := c.Store.List(ctx, "")
	if err != nil {
		return nil, err
	}
	folders := byBackup(objs)
	byID := make(map[string]*Entry, len(folders))
	ids := make([]string, 0, len(folders))
	for id, objs := range folders {
		byID[id] = &Entry{ID: id, Objects: objs}
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	// One GET per manifest, tens of milliseconds each on S3: read one at a
	// time, a store of a thousand backups took most of a minute for every
	// list and every retention pass.
	sem := make(chan struct{}, manifestReaders)
	var wg sync.WaitGroup
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c.readEntry(ctx, byID[id], now)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		if e := byID[id]; len(e.Objects) > 0 {
			out = append(out, *e)
		}
	}
	// Ids order backups to the second; within one, the random suffix
	// would decide, so there the manifests' start times do (as retention's).
	sort.SliceStable(out, func(i, j int) bool { return newer(out[i], out[j]) })
	return out, nil
}

// gone reports whether a listing of backup id's folder, taken now, no
// longer shows its manifest, and puts what it shows in left: whether a
// read that found no manifest saw it deleted, rather than a server
// answering "not found" for an object it lists (which must not turn the
// backup into an orphan for prune to remove).
func (c Catalog) gone(ctx context.Context, id string, left *[]Object) bool {
	objs, err := c.Store.List(ctx, id+"/")
	if err != nil || holdsManifest(objs, id) {
		return false
	}
	*left = byBackup(objs)[id]
	return true
}

// newer orders entries newest first: by the second in their ids; within
// one, those with a manifest first, by start time; then by id. (A total
// order: mixing start times and ids among the same entries would not be.)
func newer(a, b Entry) bool {
	if a.ID[:idSecond] != b.ID[:idSecond] {
		return a.ID > b.ID
	}
	if (a.Manifest != nil) != (b.Manifest != nil) {
		return a.Manifest != nil
	}
	if a.Manifest != nil && !a.Manifest.StartedAt.Equal(b.Manifest.StartedAt) {
		return a.Manifest.StartedAt.After(b.Manifest.StartedAt)
	}
	return a.ID > b.ID
}

// idSecond is the length of an id's time part, "20060102-150405".
const idSecond = len("20060102-150405")

// Newest reads manifests in Entries' order, stopping at the first completed
// backup (Entries reads them all): that backup, or an error wrapping
// ErrNoBackups, and the newest failed backup if one came after it.
// Unreadable manifests are passed over here, and so are completed backups
// whose start time cannot rank them (CheckStart), and failed ones from
// ahead of the clock: one stamped a month ahead would be the daemon's last
// success (or failure) for that month, and no run overdue. So are
// completed backups whose data object the listing shows missing or cut
// short (damage; a missing globals object alone leaves the data
// restorable): a daemon restarted after one was damaged would call it its
// last success, and say healthy. List shows them all.
func (c Catalog) Newest(ctx context.Context) (completed Manifest, failedAfter *Manifest, err error) {
	now := c.now()
	objs, err := c.Store.List(ctx, "")
	if err != nil {
		return Manifest{}, nil, err
	}
	folders := byBackup(objs)
	var ids []string
	for _, o := range objs {
		if id, ok := BackupOf(o.Key); ok && o.Key == ManifestKey(id) {
			ids = append(ids, id)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	for len(ids) > 0 {
		// A second at a time: within one, newer orders them by start time.
		n := 1
		for n < len(ids) && ids[n][:idSecond] == ids[0][:idSecond] {
			n++
		}
		var group []Entry
		for _, id := range ids[:n] {
			m, err := c.Manifest(ctx, id)
			if err != nil && ctx.Err() != nil {
				return Manifest{}, nil, ctx.Err()
			}
			// A failed one from ahead of the clock too: the daemon would
			// say "failing" until the clock reached it.
			if err == nil && m.CheckStart(now) == nil && !m.startsAhead(now) {
				group = append(group, Entry{ID: id, Manifest: &m})
			}
		}
		ids = ids[n:]
		sort.SliceStable(group, func(i, j int) bool { return newer(group[i], group[j]) })
		for _, e := range group {
			switch {
			case e.Manifest.OK() && unrestorable(damage(*e.Manifest, folders[e.ID], true)):
			case e.Manifest.OK():
				return *e.Manifest, failedAfter, nil
			case failedAfter == nil && e.Manifest.Status == StatusFailed && !e.Manifest.Stopped:
				failedAfter = e.Manifest
			}
		}
	}
	return Manifest{}, failedAfter, ErrNoBackups
}

// Manifests returns every readable manifest, newest first. With all false
// only completed backups are returned.
func (c Catalog) Manifests(ctx context.Context, all bool) ([]Manifest, error) {
	entries, err := c.Entries(ctx)
	if err != nil {
		return nil, err
	}
	var ms []Manifest
	for _, e := range entries {
		if e.Manifest != nil && (all || e.Manifest.OK()) {
			ms = append(ms, *e.Manifest)
		}
	}
	return ms, nil
}

// Resolve turns "latest" or an id into a manifest. "latest" is the newest
// completed backup; it stops at a newer manifest it cannot read, or a
// newer backup whose start time cannot rank it (CheckStart), rather than
// pass over it. An id is taken at its word.
func (c Catalog) Resolve(ctx context.Context, ref string) (Manifest, error) {
	if ref == "" || ref == "latest" {
		entries, err := c.Entries(ctx)
		if err != nil {
			return Manifest{}, err
		}
		for _, e := range entries {
			if e.Err != nil {
				// Newer than any completed backup, and maybe one itself:
				// passing over it would silently restore an older one.
				return Manifest{}, fmt.Errorf("latest: %w; name a backup id to use an older one", e.Err)
			}
			if errors.Is(e.Damaged, ErrStartTime) {
				// It may be the newest backup, or one hours older than
				// the next (its host's clock ran ahead): restoring it, or
				// passing over it, would be a guess.
				return Manifest{}, fmt.Errorf("latest: backup %s: %w; name a backup id (`pgbackups list`)", e.ID, e.Damaged)
			}
			if e.Manifest != nil && e.Manifest.OK() && unrestorable(e.Damaged) {
				// Restoring it fails; passing over it would restore an
				// older one than asked, unannounced.
				hint := ""
				if good := newestRestorable(entries); good != "" {
					hint = "; the newest backup that is not is " + good
				}
				return Manifest{}, fmt.Errorf("latest: backup %s: %w; name a backup id to use an older one%s", e.ID, e.Damaged, hint)
			}
			if e.Manifest != nil && e.Manifest.OK() {
				// One of the same second whose manifest cannot be read
				// sorts after it (no start time to order it by), and may
				// be the newer.
				for _, o := range entries {
					if o.Err != nil && o.ID[:idSecond] == e.ID[:idSecond] {
						return Manifest{}, fmt.Errorf("latest: %w; it was taken in the same second as %s, and may be the newer: name a backup id", o.Err, e.ID)
					}
				}
				return *e.Manifest, nil
			}
		}
		return Manifest{}, ErrNoBackups
	}
	return c.Manifest(ctx, ref)
}

// unrestorable reports whether damage (Entry.Damaged) leaves a completed
// backup's data unreadable: anything but a missing globals object alone.
func unrestorable(damage error) bool {
	return errors.Is(damage, ErrDamaged) && !errors.Is(damage, ErrGlobalsMissing)
}

// newestRestorable is the id of the newest completed backup in entries
// with nothing wrong with its data, or "".
func newestRestorable(entries []Entry) string {
	for _, e := range entries {
		if e.Manifest != nil && e.Manifest.OK() && (e.Damaged == nil || errors.Is(e.Damaged, ErrGlobalsMissing)) {
			return e.ID
		}
	}
	return ""
}

// Delete removes a backup: the manifest first, so a half-deleted backup is
// never listed as good, then every other object under its id.
func (c Catalog) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a backup id", id)
	}
	objs, err := c.Store.List(ctx, id+"/")
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("backup %s: %w", id, ErrNotFound)
	}
	mk := ManifestKey(id)
	for _, o := range objs {
		if o.Key == mk {
			if err := c.Store.Delete(ctx, mk); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("delete %s: %w", id, err)
			}
		}
	}
	for _, o := range objs {
		if o.Key == mk || path.Dir(o.Key) != id {
			continue
		}
		if err := c.Store.Delete(ctx, o.Key); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	return nil
}
