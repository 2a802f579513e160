package dump

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/internal/forkthread"
	"github.com/pgbackups/pgbackups/storage"
)

// The restore path: storage -> verify -> decompress -> pg_restore. Nothing
// lands on disk unless a parallel restore (--jobs) needs a seekable file.

// ErrCorrupt means a stored object is not what capture stored: a checksum
// or size differs from the manifest, or it does not decompress.
var ErrCorrupt = errors.New("stored object does not match its manifest")

// BackupReader streams a backup's pg_dump archive out of storage,
// decompressing it and hashing both the stored and the decompressed bytes,
// so that Check can prove what was read is exactly what capture stored.
type BackupReader struct {
	m      storage.Manifest
	rc     io.ReadCloser
	stored *hashingReader // the object as read from storage
	plain  io.Reader      // stored, decrypted when the backup is encrypted
	dec    *zstd.Decoder
	dump   hash.Hash
	n      int64
}

// missingObject explains an object of m that is not found: the backup was
// deleted (`pgbackups delete`, retention) since its manifest was read, if
// the manifest is gone too, else damage.
func missingObject(ctx context.Context, st storage.Store, m storage.Manifest, what, key string) error {
	if _, err := (storage.Catalog{Store: st}).Manifest(ctx, m.ID); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("the backup was deleted since it was chosen (its manifest is gone too): %w", storage.ErrNotFound)
	}
	return fmt.Errorf("%w: its %s object %s is missing", ErrCorrupt, what, key)
}

// OpenBackup opens m's data object. Only completed backups can be read,
// and only from their own folder, with digests to check them against. ids
// open an encrypted backup (see decrypting); others need none.
func OpenBackup(ctx context.Context, st storage.Store, m storage.Manifest, ids []age.Identity) (*BackupReader, error) {
	if err := m.CheckData(); err != nil {
		return nil, err
	}
	rc, err := st.Get(ctx, m.DataKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, missingObject(ctx, st, m, "data", m.DataKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", m.DataKey, err)
	}
	stored := &hashingReader{r: rc, h: sha256.New()}
	plain, err := decrypting(stored, m, m.DataKey, ids)
	if err != nil {
		rc.Close()
		if rerr := stored.failed(); rerr != nil {
			return nil, fmt.Errorf("read %s: %w", m.DataKey, rerr)
		}
		return nil, err
	}
	// One decoder goroutine: restore speed is pg_restore's, and memory
	// stays at one window.
	dec, err := zstd.NewReader(plain, zstd.WithDecoderConcurrency(1))
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return &BackupReader{m: m, rc: rc, stored: stored, plain: plain, dec: dec, dump: sha256.New()}, nil
}

// Read returns decompressed archive bytes. A read error from storage comes
// back as it is; a stream that does not decompress wraps ErrCorrupt.
func (b *BackupReader) Read(p []byte) (int, error) {
	n, err := b.dec.Read(p)
	b.dump.Write(p[:n])
	b.n += int64(n)
	if err != nil && err != io.EOF {
		return n, b.readError(err)
	}
	return n, err
}

// readError says what a failed read of the archive was: storage's read
// that broke, else damage, found by age's check or by zstd.
func (b *BackupReader) readError(err error) error {
	if rerr := b.stored.failed(); rerr != nil {
		return fmt.Errorf("read %s: %w", b.m.DataKey, rerr)
	}
	if de := (decryptError{}); errors.As(err, &de) {
		return fmt.Errorf("%w: %v", ErrCorrupt, de) // "decrypt: ..."
	}
	return fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
}

// Check reads whatever follows the compressed stream and compares sizes
// and checksums with the manifest. Call it once Read returned io.EOF.
func (b *BackupReader) Check() error {
	if _, err := io.Copy(io.Discard, b.plain); err != nil { // age's last chunk
		return b.readError(err)
	}
	if _, err := io.Copy(io.Discard, b.stored); err != nil {
		return fmt.Errorf("read %s: %w", b.m.DataKey, err)
	}
	m := b.m
	if got := hex.EncodeToString(b.stored.h.Sum(nil)); got != m.SHA256 || b.stored.n != m.StoredBytes {
		return fmt.Errorf("%w: stored object is %d bytes with sha256 %s, manifest says %d bytes with sha256 %s",
			ErrCorrupt, b.stored.n, got, m.StoredBytes, m.SHA256)
	}
	if got := hex.EncodeToString(b.dump.Sum(nil)); got != m.DumpSHA256 || b.n != m.DumpBytes {
		return fmt.Errorf("%w: archive is %d bytes with sha256 %s, manifest says %d bytes with sha256 %s",
			ErrCorrupt, b.n, got, m.DumpBytes, m.DumpSHA256)
	}
	return nil
}

// Close releases the object and the decoder.
func (b *BackupReader) Close() error {
	b.dec.Close()
	return b.rc.Close()
}

// hashingReader counts and hashes what is read through it and remembers
// the underlying reader's last error.
type hashingReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

// failed is the underlying reader's error, if it failed: a read that
// broke in storage, not damage in what was read.
func (hr *hashingReader) failed() error {
	if hr.err == io.EOF {
		return nil
	}
	return hr.err
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	hr.err = err
	return n, err
}

// CopyBackup writes m's decompressed pg_dump archive to w and verifies it.
// When it returns an error, what was written to w must be discarded.
func CopyBackup(ctx context.Context, st storage.Store, m storage.Manifest, ids []age.Identity, w io.Writer) (int64, error) {
	n, err := copyBackup(ctx, st, m, ids, w)
	if err != nil {
		return n, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	return n, nil
}

func copyBackup(ctx context.Context, st storage.Store, m storage.Manifest, ids []age.Identity, w io.Writer) (int64, error) {
	br, err := OpenBackup(ctx, st, m, ids)
	if err != nil {
		return 0, err
	}
	defer br.Close()
	n, err := io.Copy(w, ctxReader{ctx, br})
	if err != nil {
		return n, err
	}
	return n, br.Check()
}

// ctxReader ends a copy once ctx is done, so a signal stops a long stream.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// RestoreOptions configures one restore.
type RestoreOptions struct {
	Store    storage.Store
	Manifest storage.Manifest
	Target   Conn   // the database restored into; it must exist
	PgBinDir string // searched first for pg_restore and psql

	Clean         bool // drop the archive's objects before recreating them (--clean --if-exists)
	NoOwner       bool // skip ALTER ... OWNER TO: everything belongs to the restoring role
	NoACL         bool // skip GRANT/REVOKE
	NoTablespaces bool // skip SET default_tablespace: all goes into the target's default, so the backup's tablespaces need not exist there
	// NoSubscriptions leaves out the backup's logical replication
	// subscriptions (pg_restore --no-subscriptions). Restored, each names
	// the source's publisher and replication slot: see warnSubscriptions.
	NoSubscriptions bool
	WithGlobals     bool // apply the backup's roles and tablespaces first
	// Identities open an encrypted backup (PGBACKUPS_AGE_IDENTITY_FILE).
	Identities []age.Identity
	// DatabaseProperties applies, after the restore, the archive's
	// entries about the database itself (owner, ALTER DATABASE ... SET,
	// ALTER ROLE ... IN DATABASE ... SET, grants on it, its comment),
	// which pg_restore applies only with --create, renamed to the target.
	// NoOwner leaves out the owner, NoACL the grants.
	DatabaseProperties bool
	// Jobs > 1 runs pg_restore in parallel, which needs the archive as a
	// seekable file: it is decompressed into TempDir first, then removed.
	Jobs    int
	TempDir string // "" means os.TempDir()
	Logger  *slog.Logger

	// verifying marks verify's restore into its scratch database: the
	// whole archive is read even when pg_restore stops early on a statement
	// the target refused (verify's answer is the checksums), and advice
	// names what verify can do (re-create the scratch database), not
	// restore's flags.
	verifying bool
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Database     string        // the target's current_database()
	Tables       int           // tables whose data was restored
	Rows         int64         // rows restored, summed over those tables
	Duration     time.Duration // from start to pg_restore's exit
	GlobalsNotes []string      // psql's notices and errors while applying globals
	TempFile     string        // the archive file a parallel restore used (now removed)
	// DatabaseNotes says which of the database's own properties were not
	// applied, and why (with DatabaseProperties).
	DatabaseNotes []string
	// DatabaseApplied counts the database's own properties applied.
	DatabaseApplied int
}

// Restore restores a completed backup into an existing database. The
// archive streams from storage through zstd into pg_restore's stdin; its
// checksums are verified as it passes, and a mismatch fails the restore.
// pg_restore runs with --exit-on-error: the first SQL error stops it and
// its stderr's tail is in the error.
func Restore(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	start := time.Now()
	m := o.Manifest
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := RestoreResult{Database: o.Target.Database()}
	fail := func(err error) (RestoreResult, error) {
		return res, fmt.Errorf("backup %s into %s: %w", m.ID, o.Target, err)
	}
	if !m.OK() {
		return res, fmt.Errorf("backup %s did not complete (status %s); it cannot be restored", m.ID, m.Status)
	}
	// What storage can tell without reading the archive fails the restore
	// before the target is touched: a manifest naming no data object, a
	// data object missing or cut short, globals missing or corrupt.
	unchanged := func(err error) (RestoreResult, error) {
		return fail(fmt.Errorf("%w; nothing was changed", err))
	}
	if err := m.CheckData(); err != nil {
		return unchanged(err)
	}
	listed := m
	if !o.WithGlobals {
		listed.GlobalsKey = "" // not read: a restore without them works
	}
	if err := (storage.Catalog{Store: o.Store}).Damage(ctx, listed); err != nil {
		switch {
		case errors.Is(err, storage.ErrDamaged):
			return unchanged(fmt.Errorf("%w: %w", ErrCorrupt, err))
		case ctx.Err() != nil || !accessDenied(err):
			return unchanged(err)
		}
		// A role allowed to read objects but not to list them (no
		// s3:ListBucket) restores as it always did: the checksums still
		// prove what is read. Any other failure to list (the network, the
		// store down) fails here, before anything changes.
		log.Warn("could not list the backup's objects to check them before restoring; going on, the checksums check what is read", "backup", m.ID, "err", err)
	}
	var globals []byte
	if o.WithGlobals {
		g, err := ReadGlobals(ctx, o.Store, m, o.Identities)
		if err != nil {
			return unchanged(err)
		}
		// What psql will run, checked before anything changes.
		if o.NoTablespaces {
			g = WithoutTablespaces(g)
		}
		globals = globalsScript(g)
		if line, head, found := psqlMetaCommand(globals); found {
			// pg_dumpall writes none; psql would run it, \! a shell
			// command on this host: a globals object changed in storage.
			return unchanged(fmt.Errorf("the backup's globals hold a psql meta-command (%q, line %d of the script pgbackups runs), which pg_dumpall does not write: refused, for psql would run it on this host; the object may have been changed in storage (restore without --with-globals, and create the roles yourself)", head, line))
		}
	}
	info, err := Preflight(ctx, o.Target)
	if err != nil {
		if se := (*RedactedError)(nil); errors.As(err, &se) && se.Code == sqlstateInvalidCatalogName {
			err = fmt.Errorf("%w (restore does not create the database: createdb it first, with -O and its owner role where that role exists, then restore into it)", err)
		}
		return fail(err)
	}
	res.Database = info.Database
	pgRestore, err := restoreTool(ctx, o.PgBinDir, m, info)
	if err != nil {
		return fail(err)
	}
	var psql Tool // applies the globals; looked for before anything changes
	if o.WithGlobals {
		if psql, err = FindTool(ctx, "psql", o.PgBinDir, 0); err != nil {
			return unchanged(err)
		}
	}
	if src := manifestMajor(m); src > info.Major() {
		log.Warn("restoring into an older PostgreSQL than the backup's: pg_dump does not promise that its output loads there",
			"backup", m.ID, "backup_server_version", m.ServerVersion, "target_server_version", info.Version)
	}
	log.Info("restore starting", "backup", m.ID, "pg_restore", pgRestore.Path, "pg_restore_version", pgRestore.Version,
		"target_server_version", info.Version)
	if !o.Clean {
		// pg_restore would stop at the first object that exists, after
		// restoring what came before it: refuse before touching anything.
		what, err := contents(ctx, o.Target)
		if err != nil {
			return fail(err)
		}
		if what != "" {
			return fail(fmt.Errorf("the target database is not empty (%s); nothing was changed: restore into a new database (or drop and re-create this one, after a restore that failed part-way), or add --clean to replace the objects the backup holds", what))
		}
	} else if info.VersionNum >= 100000 {
		// --clean sends DROP SUBSCRIPTION for the backup's subscriptions,
		// and dropping one that has a replication slot connects to its
		// publisher and drops the slot there: a restored copy's would be
		// the real subscriber's.
		subs, err := slottedSubscriptions(ctx, o.Target)
		if err != nil {
			return fail(err)
		}
		if len(subs) > 0 {
			return fail(fmt.Errorf("the target database holds subscriptions with replication slots (%s), and --clean would drop them, and their slots on the publisher; nothing was changed: detach each first (ALTER SUBSCRIPTION name DISABLE; ALTER SUBSCRIPTION name SET (slot_name = NONE)), or restore into a new database",
				strings.Join(subs, ", ")))
		}
	}
	var archive string // the checked archive file of a parallel restore
	var sum ArchiveSummary
	if o.Jobs > 1 {
		// Decompressed and checked before anything changes: a damaged
		// backup then leaves the target (and its cluster's roles) as it was.
		archive, sum, err = parallelArchive(ctx, o, log)
		if archive != "" {
			res.TempFile = archive
			defer removeTemp(archive)
		}
		if err != nil {
			return unchanged(err)
		}
	}
	if o.Clean && o.Jobs <= 1 {
		// A streamed restore learns the archive's checksums only at its
		// end, and --clean drops the backup's objects at its start: a
		// backup damaged part-way would leave a live target with them
		// dropped and not recreated. So the backup is read through once
		// first, and checked, before anything changes.
		log.Info("reading the backup through to check its checksums before --clean changes anything", "backup", m.ID, "stored_bytes", m.StoredBytes)
		if _, err := copyBackup(ctx, o.Store, m, o.Identities, io.Discard); err != nil {
			return unchanged(fmt.Errorf("checking the backup before --clean: %w", err))
		}
	}
	var br *BackupReader // the archive of a streamed restore, opened before anything changes
	if o.Jobs <= 1 {
		if br, err = OpenBackup(ctx, o.Store, m, o.Identities); err != nil {
			return unchanged(err)
		}
		defer br.Close()
	}
	if o.WithGlobals {
		notes, err := applyGlobals(ctx, o.Target, psql, globals)
		if slices.ContainsFunc(m.Warnings, func(w string) bool { return strings.HasPrefix(w, noRolePasswords) }) {
			// Said at capture, and in info; said here too, where the
			// operator looks, before the application fails to log in.
			notes = append(notes, "the backup's roles were stored without passwords (it was taken by a role that cannot read pg_authid): a role created now has none; set it with ALTER ROLE name PASSWORD '...'")
		}
		res.GlobalsNotes = notes
		if err != nil {
			return fail(fmt.Errorf("%w (some of the backup's roles and tablespaces may be in the target's cluster already)", err))
		}
		log.Info("globals applied", "backup", m.ID, "messages", len(notes))
		fail = func(err error) (RestoreResult, error) {
			return res, fmt.Errorf("backup %s into %s: %w; the roles and tablespaces --with-globals applied stay in the target's cluster", m.ID, o.Target, err)
		}
	}
	child, err := o.Target.forChild(os.TempDir())
	if err != nil {
		return fail(err)
	}
	defer child.cleanup()
	args := []string{"--no-password", "--exit-on-error"}
	if o.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	if o.NoOwner {
		args = append(args, "--no-owner")
	}
	if o.NoACL {
		args = append(args, "--no-acl")
	}
	if o.NoTablespaces {
		args = append(args, "--no-tablespaces")
	}
	if o.NoSubscriptions && pgRestore.Major >= 10 {
		args = append(args, "--no-subscriptions") // older archives hold none
	}
	if child.dbname != "" {
		args = append(args, "--dbname="+child.dbname)
	}

	if o.Jobs > 1 {
		err = restoreParallel(ctx, o, pgRestore, args, child.env, archive)
	} else {
		sum, err = restoreStream(ctx, o, br, pgRestore, args, child.env, log)
	}
	res.Duration = time.Since(start)
	if err != nil {
		switch msg := err.Error(); {
		case strings.Contains(msg, "already exists") && o.verifying:
			err = fmt.Errorf("%w (the scratch database is not empty: drop and re-create it before each verify)", err)
		case strings.Contains(msg, "already exists") && !o.Clean:
			err = fmt.Errorf("%w (the target database is not empty: restore into a new database, or add --clean to replace the objects the backup holds)", err)
		case strings.Contains(msg, "cannot drop") && strings.Contains(msg, "depend") && o.Clean:
			err = fmt.Errorf("%w (the target holds objects the backup does not, created after it was taken, and --clean drops only the backup's own: restore into a new database, or drop and re-create this one)", err)
		case strings.Contains(msg, "default_tablespace") && !o.NoTablespaces:
			err = fmt.Errorf("%w (the target cluster lacks a tablespace the backup uses: create it first, or add --no-tablespaces to put everything in the target's default tablespace)", err)
		case strings.Contains(msg, "does not exist") && strings.Contains(msg, "CREATE POLICY"):
			err = fmt.Errorf("%w (a row-level security policy names a role the target cluster lacks; --no-owner and --no-acl do not drop policies: create that role there first, as --with-globals does)", err)
		case strings.Contains(msg, `role "`) && strings.Contains(msg, "does not exist") && !o.WithGlobals && !o.NoOwner && !o.verifying:
			err = fmt.Errorf("%w (the target cluster lacks a role the backup's objects belong to: drop and re-create the target database, then restore with --with-globals to create the backup's roles first, or with --no-owner --no-acl to give everything to the restoring role)", err)
		}
		if subs := sum.Subscriptions; len(subs) > 0 && !o.NoSubscriptions {
			// Dropping the target, the usual next step, needs them gone, and
			// DROP SUBSCRIPTION drops the publisher's slot.
			err = fmt.Errorf("%w; if the restore got as far as the backup's subscriptions (%s), the target holds them: detach each (ALTER SUBSCRIPTION name DISABLE; ALTER SUBSCRIPTION name SET (slot_name = NONE)) before dropping it or the database",
				err, strings.Join(subs, ", "))
		}
		return fail(err)
	}
	for _, t := range sum.Tables {
		res.Tables++
		res.Rows += t.Rows
	}
	if o.DatabaseProperties && !o.verifying {
		res.DatabaseApplied, res.DatabaseNotes = applyDatabaseEntries(ctx, o, sum.Database, res.Database)
		for _, n := range res.DatabaseNotes {
			log.Warn("a property of the database itself was not applied", "backup", m.ID, "err", n)
		}
	}
	if !o.NoSubscriptions {
		warnSubscriptions(log, m.ID, sum.Subscriptions)
	}
	return res, nil
}

// applyDatabaseEntries runs the archive's statements about the database
// itself on target (named target), renamed from the dumped database's
// name: pg_restore without --create leaves them out, and a restore into
// a new database otherwise loses its owner, settings, grants and comment.
// Each entry is applied on its own; one that fails (a role the cluster
// lacks) is a note, not a failed restore: the data is there.
func applyDatabaseEntries(ctx context.Context, o RestoreOptions, entries []DatabaseEntry, target string) (applied int, notes []string) {
	var src string
	props := false
	for _, e := range entries {
		switch e.Desc {
		case "DATABASE":
			src = e.Tag
		case "DATABASE PROPERTIES":
			props = true
		}
	}
	if src == "" {
		return 0, []string{"the archive holds no entry for the database itself (an archive it could not read?): none applied"}
	}
	if !props && archiveMajor(o.Manifest) < 11 {
		// pg_dump before 11 left them to pg_dumpall. From 11 on, no such
		// entry means the database had none: nothing to say.
		notes = append(notes, "the archive holds none of the database's settings or grants (pg_dump before 11 left them to pg_dumpall): only its owner and comment can be applied")
	}
	conn, err := Connect(ctx, o.Target)
	if err != nil {
		return 0, []string{err.Error()}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	to := pgx.Identifier{target}.Sanitize()
	for _, e := range entries {
		var sql string
		switch {
		case e.Desc == "DATABASE":
			if o.NoOwner || e.Owner == "" {
				continue
			}
			sql = "ALTER DATABASE " + to + " OWNER TO " + pgx.Identifier{e.Owner}.Sanitize()
		case e.Desc == "ACL" && o.NoACL:
			continue
		}
		if e.Desc != "DATABASE" && e.SQL == "" {
			notes = append(notes, fmt.Sprintf("%s %s: over %d bytes, not kept", strings.ToLower(e.Desc), e.Tag, maxDatabaseSQL))
			continue
		}
		// A statement at a time: sent together they are one transaction,
		// and a GRANT to a role the cluster lacks would undo the REVOKE
		// ... FROM PUBLIC before it, reopening the database to everyone.
		stmts := []string{sql}
		if e.Desc != "DATABASE" {
			stmts = databaseStatements(e.SQL, src, to)
		}
		for _, stmt := range stmts {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				notes = append(notes, fmt.Sprintf("%s: %s", stmt, Redact(err, o.Target)))
				continue
			}
			applied++
		}
	}
	return applied, notes
}

// databaseStatements splits pg_dump's SQL for one database entry into its
// statements, at semicolons outside quotes, with "DATABASE name" outside
// quotes (not in a comment's text or a setting's value) renamed to to.
// pg_dump writes these with '...' or E'...' literals and "..." identifiers,
// never dollar quotes or SQL comments.
func databaseStatements(sql, name, to string) []string {
	quoted := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	var out []string
	var b strings.Builder
	identChar := func(c byte) bool {
		return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '\'' || c == '"':
			// A literal or quoted identifier, copied as it is.
			esc := c == '\'' && i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e')
			j := i + 1
			for j < len(sql) {
				if esc && sql[j] == '\\' {
					j += 2
					continue
				}
				if sql[j] == c {
					if j+1 < len(sql) && sql[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			j = min(j+1, len(sql))
			b.WriteString(sql[i:j])
			i = j
		case c == ';':
			b.WriteByte(';')
			if s := strings.TrimSpace(b.String()); s != ";" {
				out = append(out, s)
			}
			b.Reset()
			i++
		case strings.HasPrefix(sql[i:], "DATABASE ") && (i == 0 || !identChar(sql[i-1])):
			rest := sql[i+len("DATABASE "):]
			switch {
			case strings.HasPrefix(rest, quoted):
				b.WriteString("DATABASE " + to)
				i += len("DATABASE ") + len(quoted)
			case strings.HasPrefix(rest, name) && (len(rest) == len(name) || !identChar(rest[len(name)]) && rest[len(name)] != '"'):
				b.WriteString("DATABASE " + to)
				i += len("DATABASE ") + len(name)
			default:
				b.WriteString("DATABASE ")
				i += len("DATABASE ")
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	if s := strings.TrimSpace(b.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// warnSubscriptions tells about the logical replication subscriptions a
// restore brought back. pg_dump writes each WITH (connect = false), so it
// arrives disabled and connects nowhere, but it still names the source's
// publisher (its conninfo, password included if it had one) and that
// publisher's replication slot: ALTER SUBSCRIPTION ... ENABLE would consume
// the slot the source's own subscriber relies on, and DROP SUBSCRIPTION
// connects to the publisher and drops it. A database holding one cannot be
// dropped either. See "Replication slot management" in the PostgreSQL
// docs (logical-replication-subscription.html).
func warnSubscriptions(log *slog.Logger, id string, subs []string) {
	if len(subs) == 0 {
		return
	}
	log.Warn("the backup's logical replication subscriptions were restored, disabled; they still name the source's publisher and replication slot: "+
		"before enabling one, point it at the right publisher and slot, and before dropping one (or the database) run ALTER SUBSCRIPTION name DISABLE; ALTER SUBSCRIPTION name SET (slot_name = NONE), "+
		"or DROP SUBSCRIPTION drops the publisher's slot",
		"backup", id, "subscriptions", subs)
}

// archiveMajor is the major version of the pg_dump that wrote m's archive:
// an older pg_restore cannot read it.
func archiveMajor(m storage.Manifest) int {
	n, _ := strconv.Atoi(strings.SplitN(m.PgDumpVersion, ".", 2)[0])
	return n
}

// manifestMajor is the major version of the server m was dumped from (0
// when the manifest does not say).
func manifestMajor(m storage.Manifest) int { return m.ServerVersionNum / 10000 }

// firstTimeoutSetter is the first pg_restore major version that opens every
// session with SET transaction_timeout = 0 (_doSetFixedOutputState in
// pg_backup_archiver.c). PostgreSQL 16 and older reject the parameter, and
// with --exit-on-error that ends the restore at its first statement
// (pgAdmin #8044 and #8171 report the same failure).
const firstTimeoutSetter = 17

// restoreTool finds the pg_restore that restores m's archive into target:
// the target's own major version if it reads the archive (a pg_restore
// reads archives of its own major version and older), else the oldest
// installed one that reads it and is not older than the target; that is
// FindDumpTool's rule, keyed on the target. Where that one is 17 or later
// and the target 16 or older, an older one that reads the archive. Never simply the newest: the
// Docker image has five majors' clients, and pg_restore 18 cannot restore
// into a PostgreSQL 15. When the only fit is a pg_restore 17 or later and
// the target is 16 or older, it says why that cannot work, before anything
// is changed.
func restoreTool(ctx context.Context, binDir string, m storage.Manifest, target ServerInfo) (Tool, error) {
	archive, server := archiveMajor(m), target.Major()
	if archive >= firstTimeoutSetter && server < firstTimeoutSetter {
		why := fmt.Sprintf("Only pg_restore %d or newer reads an archive of pg_dump %s, and pg_restore %d and later always send SET transaction_timeout = 0, which PostgreSQL %d and older reject",
			archive, m.PgDumpVersion, firstTimeoutSetter, firstTimeoutSetter-1)
		if src := manifestMajor(m); src > 0 && src < archive {
			return Tool{}, fmt.Errorf("this backup cannot be restored into PostgreSQL %s: it is of a PostgreSQL %s server, but capture used the newer pg_dump %s (the server's own was not found, or PGBACKUPS_PG_BIN_DIR held a newer one). %s. Restore it into a PostgreSQL %d or newer server, and install postgresql-client-%d beside pgbackups so that later backups restore into PostgreSQL %d; nothing was changed",
				shortVersion(target.Version), shortVersion(m.ServerVersion), m.PgDumpVersion, why, archive, src, src)
		}
		of := "pg_dump " + m.PgDumpVersion
		if m.ServerVersion != "" {
			of = fmt.Sprintf("PostgreSQL %s (%s)", shortVersion(m.ServerVersion), of)
		}
		return Tool{}, fmt.Errorf("a downgrade restore, which cannot work: the backup is of %s, and the target is PostgreSQL %s. %s. Restore into a PostgreSQL %d or newer server; nothing was changed",
			of, shortVersion(target.Version), why, archive)
	}
	tool, err := FindDumpTool(ctx, "pg_restore", binDir, max(archive, server))
	if err != nil {
		return Tool{}, err
	}
	if tool.Major >= firstTimeoutSetter && server < firstTimeoutSetter {
		// An older pg_restore that reads the archive restores into a newer
		// server (its SQL is of the archive's version, which newer servers
		// load): better than one the target rejects.
		// PGBACKUPS_PG_BIN_DIR's, searched first, is the one refused.
		if older, err := FindDumpTool(ctx, "pg_restore", "", archive); err == nil && older.Major < firstTimeoutSetter {
			return older, nil
		}
		return Tool{}, fmt.Errorf("cannot restore into PostgreSQL %s with pg_restore %s (%s), the one found for this archive (pg_dump %s): pg_restore %d and later always send SET transaction_timeout = 0, which PostgreSQL %d and older reject. Install the target's own client, e.g. `apt install postgresql-client-%d` from apt.postgresql.org, or point PGBACKUPS_PG_BIN_DIR (searched first) at its bin directory; nothing was changed",
			shortVersion(target.Version), tool.Version, tool.Path, m.PgDumpVersion, firstTimeoutSetter, firstTimeoutSetter-1, max(archive, server))
	}
	return tool, nil
}

// shortVersion is server_version without its packaging note: "15.18" of
// "15.18 (Debian 15.18-1.pgdg120+1)".
func shortVersion(v string) string {
	if f := strings.Fields(v); len(f) > 0 {
		return f[0]
	}
	return v
}

// restoreStream pipes the archive into pg_restore's stdin.
func restoreStream(ctx context.Context, o RestoreOptions, br *BackupReader, pgRestore Tool, args, env []string, log *slog.Logger) (ArchiveSummary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := command(ctx, pgRestore.Path, args, env)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return ArchiveSummary{}, fmt.Errorf("pg_restore: %w", err)
	}
	if err := forkthread.Start(cmd); err != nil {
		return ArchiveSummary{}, fmt.Errorf("pg_restore: start %s: %w", pgRestore.Path, err)
	}
	scan := startArchiveScan()
	readErr, writeErr := pump(stdin, io.TeeReader(ctxReader{ctx, br}, scan))
	if readErr == nil && writeErr == nil {
		readErr = br.Check()
	}
	if readErr != nil {
		// Stop pg_restore before it sees a clean end of input.
		cancel()
	}
	stdin.Close()
	waitErr := cmd.Wait()
	sum, _ := scan.Finish()
	switch {
	case readErr != nil:
		return sum, fmt.Errorf("%w (pg_restore was stopped; the target database may be partly restored)", readErr)
	case waitErr != nil:
		failed := partly(childError("pg_restore", waitErr, stderr))
		switch {
		case ctx.Err() != nil:
			// Interrupted: nothing to tell apart, and no time to read on.
		case writeErr != nil && (o.verifying || mayBeDamage(stderr.String())):
			// pg_restore stopped before the end of the archive. Damage
			// that still decompresses (zstd checks its frame's checksum
			// only at the end) reaches pg_restore as nonsense, and it fails
			// on it first ("out of memory" for a length gone wrong, a COPY
			// row that does not parse): read the rest, so that the
			// checksums tell a damaged backup from a failing restore.
			why := "on what may be damage"
			if o.verifying {
				why = "(verify checks the whole backup all the same)"
			}
			log.Warn("pg_restore failed before the end of the archive "+why+": reading the rest of the backup to check its checksums (interrupt to skip the check)", "backup", o.Manifest.ID, "err", failed)
			switch err := finish(ctx, br); {
			case errors.Is(err, ErrCorrupt):
				return sum, fmt.Errorf("%w (pg_restore failed on the damaged archive first, %v)", err, failed)
			case err == nil:
				failed = fmt.Errorf("%w; the backup's checksums match", failed)
			default:
				failed = fmt.Errorf("%w; the backup's checksums were not checked (%v)", failed, err)
			}
		case writeErr != nil:
			// A statement the server refused (a missing role, an object
			// that exists): the restore's problem, found early. Reading
			// the rest of a large backup first would keep the answer
			// waiting for hours.
			failed = fmt.Errorf("%w; to check the backup itself, run `pgbackups verify %s`", failed, o.Manifest.ID)
		}
		return sum, failed
	case writeErr != nil:
		// pg_restore finished without reading everything: finish reading
		// so the checksums still prove the archive.
		if err := finish(ctx, br); err != nil {
			return sum, fmt.Errorf("%w (pg_restore had finished without reading it all, so the target database holds what it restored: do not rely on it)", err)
		}
		return sum, nil
	}
	return sum, nil
}

// slottedSubscriptions lists the subscriptions of c's database that have a
// replication slot on their publisher (PostgreSQL 10+).
func slottedSubscriptions(ctx context.Context, c Conn) ([]string, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT quote_ident(subname) FROM pg_subscription
		WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subslotname IS NOT NULL ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("subscriptions in %s: %s", c, Redact(err, c))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("subscriptions in %s: %s", c, Redact(err, c))
	}
	return names, nil
}

// accessDenied reports whether err is storage refusing the request for
// lack of permission: S3's AccessDenied (any API error with that code), or
// a local directory pgbackups may not read.
func accessDenied(err error) bool {
	var api interface{ ErrorCode() string }
	return errors.Is(err, fs.ErrPermission) || errors.As(err, &api) && api.ErrorCode() == "AccessDenied"
}

// mayBeDamage reports whether pg_restore's stderr shows what a damaged
// archive causes: pg_restore's own complaints about its input, a COPY
// whose rows do not parse, a statement that is not SQL. Anything else (a
// statement the server refused for what it says, a connection refused,
// pg_restore killed) is answered at once, with verify suggested.
func mayBeDamage(stderr string) bool {
	for _, sign := range []string{
		// pg_restore's own complaints about its input.
		"valid archive", "magic string", "unexpected end of file", "could not read", "out of memory", "unsupported version", "invalid", "bad ",
		// Statements and rows built from damaged bytes.
		"COPY failed", "syntax error", "unterminated",
	} {
		if strings.Contains(stderr, sign) {
			return true
		}
	}
	return false
}

// finish reads what is left of br and checks it.
func finish(ctx context.Context, br *BackupReader) error {
	if _, err := io.Copy(io.Discard, ctxReader{ctx, br}); err != nil {
		return err
	}
	return br.Check()
}

// pump copies src to w until src ends or either side fails, telling apart
// a read error (storage, corruption) from a write error (the child went
// away).
func pump(w io.Writer, src io.Reader) (readErr, writeErr error) {
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// parallelArchive decompresses the archive into a temporary file and
// checks it: pg_restore --jobs needs a seekable file. The caller removes
// the file (its path is returned whenever it was created).
func parallelArchive(ctx context.Context, o RestoreOptions, log *slog.Logger) (string, ArchiveSummary, error) {
	dir := o.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := createRestoreTemp(dir, o.Manifest.ID)
	if err != nil {
		return "", ArchiveSummary{}, fmt.Errorf("temporary archive for --jobs in %s (TMPDIR): %w", dir, err)
	}
	log.Info("parallel restore needs a seekable archive: decompressing to a temporary file, removed afterwards",
		"path", f.Name(), "dump_bytes", o.Manifest.DumpBytes, "jobs", o.Jobs)
	scan := startArchiveScan()
	_, err = copyBackup(ctx, o.Store, o.Manifest, o.Identities, io.MultiWriter(f, scan))
	sum, _ := scan.Finish()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("temporary archive %s: %w", f.Name(), cerr)
	}
	if noSpace(err) {
		err = fmt.Errorf("%w (the temporary archive of --jobs needs %s in %s: point TMPDIR at a file system with room, or restore without --jobs, which needs none)",
			err, config.HumanBytes(o.Manifest.DumpBytes), dir)
	}
	return f.Name(), sum, err
}

// restoreParallel runs pg_restore --jobs on the checked archive file.
func restoreParallel(ctx context.Context, o RestoreOptions, pgRestore Tool, args, env []string, archive string) error {
	cmd, stderr := command(ctx, pgRestore.Path, append(args, "--jobs="+strconv.Itoa(o.Jobs), archive), env)
	if err := forkthread.Run(cmd); err != nil {
		return partly(childError("pg_restore", err, stderr))
	}
	return nil
}

// partly notes on a failed pg_restore that the target may hold part of the
// backup: --exit-on-error stops at the first failing statement, and what
// ran before it stays.
func partly(err error) error {
	return fmt.Errorf("%w (pg_restore stopped at the first error and does not undo what it restored before it: the target database may be partly restored)", err)
}

// VerifyOptions configures a verification.
type VerifyOptions struct {
	Store    storage.Store
	Manifest storage.Manifest
	PgBinDir string
	// RestoreTo, when set, is an empty scratch database the backup is
	// restored into, without owners, grants or tablespaces, so that it may
	// be on another server; its row counts are then compared with the
	// manifest's. Roles that row-level security policies name must exist
	// there: a policy is part of the schema being verified, not an ACL.
	RestoreTo *Conn
	Logger    *slog.Logger
	// Identities open an encrypted backup (PGBACKUPS_AGE_IDENTITY_FILE).
	Identities []age.Identity
}

// VerifyResult is what a verification established.
type VerifyResult struct {
	Entries  int            // TOC entries pg_restore --list printed (0 when restored)
	Archive  ArchiveSummary // what the archive scan read
	Counts   []CountCheck   // manifest counts against the archive's, or the scratch database's
	Restored *RestoreResult // set when RestoreTo was
	// LargeObjects is how many large objects the archive (or, with
	// RestoreTo, the scratch database) holds; -1 when not counted.
	LargeObjects int64
}

// ErrCountMismatch means the rows found differ from those recorded.
var ErrCountMismatch = errors.New("row counts differ from those recorded at capture")

// Verify re-reads a backup: its checksums, that pg_restore accepts it, and
// that its tables hold the rows the manifest recorded. Without RestoreTo,
// pg_restore --list reads the archive's table of contents and the rows are
// counted in the archive itself; with it, the backup is restored into that
// scratch database and the rows are counted there.
func Verify(ctx context.Context, o VerifyOptions) (VerifyResult, error) {
	m := o.Manifest
	res := VerifyResult{LargeObjects: -1}
	// A backup is also its globals (restore --with-globals reads them):
	// checked first, they are small.
	if m.OK() && m.GlobalsKey != "" {
		if _, err := ReadGlobals(ctx, o.Store, m, o.Identities); err != nil {
			return res, fmt.Errorf("verify %s: %w", m.ID, err)
		}
	}
	if o.RestoreTo != nil {
		if err := requireEmpty(ctx, *o.RestoreTo); err != nil {
			return res, fmt.Errorf("verify %s: %w", m.ID, err)
		}
		// Without subscriptions: restored, each would name the source's
		// publisher and replication slot, and dropping it (to re-create
		// the scratch database) would drop that slot; creating one needs
		// a superuser besides.
		r, err := Restore(ctx, RestoreOptions{
			Store: o.Store, Manifest: m, Target: *o.RestoreTo, PgBinDir: o.PgBinDir,
			NoOwner: true, NoACL: true, NoTablespaces: true, NoSubscriptions: true, Logger: o.Logger,
			Identities: o.Identities, verifying: true,
		})
		if err != nil {
			return res, fmt.Errorf("restore into the scratch database: %w", err)
		}
		res.Restored = &r
		got, err := countRows(ctx, *o.RestoreTo, m.Tables)
		if err != nil {
			return res, fmt.Errorf("verify %s: %w", m.ID, err)
		}
		res.Counts = CompareCounts(m, got)
		if res.LargeObjects, err = countLargeObjects(ctx, *o.RestoreTo); err != nil {
			return res, fmt.Errorf("verify %s: %w", m.ID, err)
		}
		return res, errors.Join(countsError(m, res.Counts), largeObjectsError(m, res.LargeObjects))
	}

	// --list connects to no server: the archive's own version reads it.
	pgRestore, err := FindDumpTool(ctx, "pg_restore", o.PgBinDir, archiveMajor(m))
	if err != nil {
		return res, fmt.Errorf("verify %s: %w", m.ID, err)
	}
	br, err := OpenBackup(ctx, o.Store, m, o.Identities)
	if err != nil {
		return res, fmt.Errorf("verify %s: %w", m.ID, err)
	}
	defer br.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// pg_restore --list reads the header and TOC from stdin and exits; the
	// rest of the archive is still read, for the checksums and the scan.
	cmd, stderr := command(ctx, pgRestore.Path, []string{"--list"}, toolEnviron(os.Environ()))
	list := &tocLines{}
	cmd.Stdout = list
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, fmt.Errorf("verify %s: pg_restore: %w", m.ID, err)
	}
	if err := forkthread.Start(cmd); err != nil {
		return res, fmt.Errorf("verify %s: pg_restore: start %s: %w", m.ID, pgRestore.Path, err)
	}
	scan := startArchiveScan()
	_, copyErr := io.Copy(io.MultiWriter(&forgivingWriter{w: stdin}, scan), ctxReader{ctx, br})
	if copyErr == nil {
		copyErr = br.Check()
	}
	stdin.Close()
	waitErr := cmd.Wait()
	res.Archive, err = scan.Finish()
	res.Entries = list.n
	if copyErr != nil {
		return res, fmt.Errorf("verify %s: %w", m.ID, copyErr)
	}
	if waitErr != nil {
		return res, fmt.Errorf("verify %s: pg_restore --list rejects the archive: %w", m.ID, childError("pg_restore", waitErr, stderr))
	}
	if err != nil {
		// The checksums match what capture stored, and pg_restore reads
		// it: the scan not understanding the archive is not corruption.
		if o.Logger != nil {
			o.Logger.Warn("archive scan incomplete; row counts not compared", "backup", m.ID, "err", err)
		}
		return res, nil
	}
	if m.TableCountMethod == CountMethodArchive {
		got := map[[2]string]int64{}
		for _, t := range res.Archive.Tables {
			got[[2]string{t.Schema, t.Table}] = t.Rows
		}
		res.Counts = CompareCounts(m, got)
	}
	res.LargeObjects = res.Archive.LargeObjects
	return res, errors.Join(countsError(m, res.Counts), largeObjectsError(m, res.LargeObjects))
}

// countLargeObjects counts the large objects of c's database.
func countLargeObjects(ctx context.Context, c Conn) (int64, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_largeobject_metadata`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count large objects on %s: %s", c, Redact(err, c))
	}
	return n, nil
}

// largeObjectsError compares the large objects found with those the
// manifest recorded, when it recorded them.
func largeObjectsError(m storage.Manifest, found int64) error {
	if m.LargeObjects == nil || found < 0 || found == *m.LargeObjects {
		return nil
	}
	return fmt.Errorf("verify %s: %w: large objects: recorded %d, found %d", m.ID, ErrCountMismatch, *m.LargeObjects, found)
}

func countsError(m storage.Manifest, cs []CountCheck) error {
	if m.TableCountMethod == CountMethodEstimate {
		return nil // estimates drift: reported, never a failure
	}
	bad := 0
	for _, c := range cs {
		if !c.OK {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("verify %s: %w: %d of %d tables", m.ID, ErrCountMismatch, bad, len(cs))
	}
	return nil
}

// forgivingWriter writes to w until w fails once, then discards: the
// stream it is part of goes on (pg_restore --list stops reading early).
type forgivingWriter struct {
	w      io.Writer
	failed bool
}

func (f *forgivingWriter) Write(p []byte) (int, error) {
	if !f.failed {
		if _, err := f.w.Write(p); err != nil {
			f.failed = true
		}
	}
	return len(p), nil
}

// tocLines counts the entries pg_restore --list prints: lines not starting
// with ';' (its comments).
type tocLines struct {
	n       int
	midLine bool
	comment bool
}

func (t *tocLines) Write(p []byte) (int, error) {
	for _, c := range p {
		if !t.midLine {
			t.midLine = true
			t.comment = c == ';' || c == '\n'
			if c == '\n' {
				t.midLine = false
				continue
			}
		}
		if c == '\n' {
			if !t.comment {
				t.n++
			}
			t.midLine = false
		}
	}
	return len(p), nil
}

// requireEmpty refuses a scratch database that already holds tables.
func requireEmpty(ctx context.Context, c Conn) error {
	what, err := contents(ctx, c)
	if err != nil {
		return err
	}
	if what != "" {
		return fmt.Errorf("%s is not empty (%s): --restore-to needs an empty scratch database: drop and re-create it (dropdb, then createdb), or name a new one", c, what)
	}
	return nil
}

// contents says what c's database holds besides what a new one does:
// relations (tables, views, sequences, foreign tables, composite types),
// schemas other than public, functions, enum, domain and range types and
// large objects, or "" for none. A restore
// that failed part-way may have created only a schema or a function, and
// pg_restore would stop at it ("already exists"). An extension's own
// objects (PostGIS's spatial_ref_sys, often there from template1) do not
// count: the dump's CREATE EXTENSION IF NOT EXISTS leaves them be.
func contents(ctx context.Context, c Conn) (string, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var rels, schemas, funcs, types, los int64
	err = conn.QueryRow(ctx, `WITH ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
		own AS (SELECT oid FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%')
		SELECT
		 (SELECT count(*) FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM own)
		    AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
		    AND (c.oid, 'pg_class'::regclass) NOT IN (SELECT objid, classid FROM ext)
		    -- a composite type's extension membership is its pg_type row's
		    AND (c.reltype, 'pg_type'::regclass) NOT IN (SELECT objid, classid FROM ext)),
		 (SELECT count(*) FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM own) AND n.nspname <> 'public'
		    AND (n.oid, 'pg_namespace'::regclass) NOT IN (SELECT objid, classid FROM ext)),
		 (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM own)
		    AND (p.oid, 'pg_proc'::regclass) NOT IN (SELECT objid, classid FROM ext)),
		 (SELECT count(*) FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM own)
		    AND t.typtype IN ('e', 'd', 'r') AND (t.oid, 'pg_type'::regclass) NOT IN (SELECT objid, classid FROM ext)),
		 (SELECT count(*) FROM pg_largeobject_metadata)`).Scan(&rels, &schemas, &funcs, &types, &los)
	if err != nil {
		return "", fmt.Errorf("check %s is empty: %s", c, Redact(err, c))
	}
	var held []string
	for _, k := range []struct {
		n    int64
		what string
	}{{rels, "relation"}, {schemas, "schema"}, {funcs, "function"}, {types, "type"}, {los, "large object"}} {
		switch {
		case k.n == 1:
			held = append(held, "1 "+k.what)
		case k.n > 1:
			held = append(held, fmt.Sprintf("%d %ss", k.n, k.what))
		}
	}
	return strings.Join(held, ", "), nil
}
