package dump

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/internal/forkthread"
	"github.com/pgbackups/pgbackups/storage"
)

// CaptureOptions configures one backup.
type CaptureOptions struct {
	Conn             Conn          // the database: pre-flight, bookkeeping, and the dump unless DumpConn is set
	Store            storage.Store // where the backup goes
	PgBinDir         string        // searched first for pg_dump
	CompressionLevel int           // zstd level 1-22
	// Recipients, when set, age-encrypts the stored objects (data and
	// globals) to these public keys, after compression.
	Recipients      Recipients
	LockWaitTimeout time.Duration // pg_dump --lock-wait-timeout; 0 leaves pg_dump's default (wait forever)
	// NewCluster accepts a location whose newest backup is of another
	// cluster (system identifier): this database's cluster changed.
	NewCluster bool
	// NewDatabase accepts a database that was dropped and re-created, or
	// emptied, since the newest backup in the location (see checkLocation).
	NewDatabase  bool
	StallTimeout time.Duration // abort when no dump byte has moved for this long, through to the upload's end, or a storage call around the stream takes this long; 0 never
	Logger       *slog.Logger
	Version      string // pgbackups' version, recorded in the manifest

	// Progress, when set, is kept at the number of dump bytes read so far,
	// for metrics and progress logs.
	Progress *atomic.Int64
	// Began, when set, is told the backup's id once it has one (after
	// pre-flight), for the caller's own logs.
	Began func(id string)
	// Throttle, when set, wraps pg_dump's stdout: a slow reader makes
	// pg_dump block on its socket and the server slow its COPY.
	Throttle func(io.Reader) io.Reader
	// Started, when set, is called with pg_dump's pid once it runs (to lower
	// its priority, or for tests that kill it), and the capture's logger
	// (its lines carry the backup; nil when Logger is).
	Started func(pid int, log *slog.Logger)
	// Compressing, when set, is called first on the goroutine that reads,
	// hashes and compresses pg_dump's output, with the capture's logger as
	// Started is. Capture locks that goroutine to an OS thread of its own,
	// which exits with it, so the hook may lower the thread (see
	// Priority.ApplyThread).
	Compressing func(log *slog.Logger)
	// DumpConn, when set, is where pg_dump runs (a read replica); Conn is
	// still used for pre-flight and bookkeeping.
	DumpConn *Conn
	// Monitors run alongside pg_dump (lock watchdog, adaptive rate). A
	// monitor returning an error aborts the backup with that error; all are
	// stopped when the dump ends.
	Monitors []Monitor
	Now      func() time.Time
	// LogicalLimit, when positive, is PGBACKUPS_LOGICAL_LIMIT: a larger
	// database gets a warning in the logs and the manifest (SizeWarning).
	LogicalLimit int64
	// SkipGlobals leaves out pg_dumpall --globals-only (roles, tablespaces),
	// which is otherwise stored next to the dump (PGBACKUPS_GLOBALS=false).
	SkipGlobals bool
}

// Running identifies a dump in progress to monitors.
type Running struct {
	ID      string
	AppName string // pg_dump's application_name in pg_stat_activity
	PID     int    // pg_dump's process id
	Conn    Conn   // the server pg_dump reads from: DumpConn, else Conn
	// Logger, when set, is the capture's: its lines carry the backup's
	// id and what the capture's caller added (the daemon's attempt).
	// Monitors log through it, else through their own Logger.
	Logger *slog.Logger
}

// logger is where monitor logs about r.
func (r Running) logger(own *slog.Logger, monitor string) *slog.Logger {
	if r.Logger != nil {
		return r.Logger.With("monitor", monitor)
	}
	return orDiscard(own).With("backup", r.ID, "monitor", monitor)
}

// Monitor watches a running dump until ctx ends.
type Monitor func(ctx context.Context, r Running) error

// ErrStopped is, to errors.Is on a capture context's cause, the operator
// stopping it: a signal to the command, the daemon's shutdown. The failed
// manifest then records Stopped.
var ErrStopped = errors.New("stopped by the operator")

// AppName is the application_name pg_dump runs under for backup id, so
// monitors can find its backend in pg_stat_activity.
func AppName(id string) string { return "pgbackups-dump-" + id }

// readAhead is how much of pg_dump's output pgbackups takes at once: the
// capacity growPipe gives its stdout pipe (64 KiB by default; 1 MiB is what
// Linux allows an unprivileged process, /proc/sys/fs/pipe-max-size), and
// the buffer the limiter is read through. pg_dump then writes, and the
// compressor compresses, a megabyte per wake-up rather than 64 KiB, and a
// throttled dump sleeps 20 times a second instead of hundreds. Measured
// (a pgbackups capture of bench/nostall.sh's 825 MiB dump, no
// other load), CPU of pgbackups and pg_dump together: at MAX_RATE=20MiB
// 21.0 s before, 15.1 s after; unthrottled 13.7 s before, 11.7 s after.
// Most of the throttled difference was the zstd encoder itself, twice as
// slow per byte when woken for every 64-128 KiB (cold caches, most
// likely), and context switches.
const readAhead = 1 << 20

// sizeHinter is implemented by stores that size their upload parts by the
// expected object size (S3's 10,000-part limit).
type sizeHinter interface {
	PutSized(ctx context.Context, key string, r io.Reader, sizeHint int64) (int64, error)
}

// Capture runs one backup: pre-flight, pg_dump streamed through zstd into
// the store, then the manifest, written last. It returns the manifest of the
// completed backup. On any failure nothing partial is left visible: the
// upload is aborted, and a manifest with status "failed" and the cause is
// recorded where storage still allows it, so `info` can explain it.
func Capture(ctx context.Context, o CaptureOptions) (storage.Manifest, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	info, err := Preflight(ctx, o.Conn)
	if err != nil {
		return storage.Manifest{}, err
	}
	pgDump, err := FindDumpTool(ctx, "pg_dump", o.PgBinDir, info.Major())
	if err != nil {
		return storage.Manifest{}, err
	}
	began := now() // with time.Now's monotonic reading: see FinishedAt
	start := began.UTC()
	m := storage.Manifest{
		ID:               storage.NewID(start),
		Database:         info.Database,
		Host:             o.Conn.String(),
		SystemID:         info.SystemID,
		DatabaseOID:      info.DatabaseOID,
		UserTables:       &info.Tables,
		ServerVersion:    info.Version,
		ServerVersionNum: info.VersionNum,
		PgDumpVersion:    pgDump.Version,
		StartedAt:        start,
		DatabaseBytes:    info.SizeBytes,
		Compression:      "zstd",
		CompressionLevel: o.CompressionLevel,
		Format:           "custom",
		EncryptedTo:      o.Recipients.Names(),
		PgbackupsVersion: o.Version,
		Source:           "primary",
	}
	if len(o.Recipients) > 0 {
		m.Encryption = EncryptionAge
	}
	log = log.With("backup", m.ID, "database", info.Database)
	if o.Logger != nil {
		o.Logger = log // the monitors' lines carry the backup too (Running.Logger)
	}
	if o.Began != nil {
		o.Began(m.ID)
	}
	if info.InRecovery {
		// The backup lock lives in this server's lock table, which the
		// primary and other standbys do not share: pgbackups pointed
		// elsewhere would not see it.
		log.Warn("PGBACKUPS_DATABASE_URL points at a standby (the server is in recovery): the backup lock held there keeps out only pgbackups pointed at this same standby; point it at the primary, and PGBACKUPS_DUMP_URL at the standby to dump from it",
			"server", o.Conn.String())
	}
	warnNewerDump(log, pgDump, info.Major())
	if skew := info.ClockSkew(began); skew != 0 {
		w := clockSkewWarning(skew)
		log.Warn(w, "clock_skew_seconds", skew.Seconds())
		m.Warnings = append(m.Warnings, w)
	}
	var standby *standbySource
	var manifestUnsure bool // the completed manifest's write failed, and may land yet (commit)
	if o.DumpConn != nil {
		if standby, err = checkStandby(ctx, o.Conn, info, *o.DumpConn, pgDump, log); err != nil {
			return storage.Manifest{}, err
		}
		// The manifest describes the server the archive came from.
		m.Source, m.Host = "standby", o.DumpConn.String()
		m.ServerVersion, m.ServerVersionNum = standby.info.Version, standby.info.VersionNum
	}
	if w := SizeWarning(info.SizeBytes, o.LogicalLimit); w != "" {
		log.Warn("database is over PGBACKUPS_LOGICAL_LIMIT; use physical backups", "database_bytes", info.SizeBytes, "logical_limit", o.LogicalLimit)
		m.Warnings = append(m.Warnings, w)
	}
	cat := storage.Catalog{Store: o.Store}
	if err := storageStep(ctx, o.StallTimeout, func(ctx context.Context) error {
		return checkLocation(ctx, cat, info, o.NewCluster, o.NewDatabase)
	}); err != nil {
		return storage.Manifest{}, err
	}
	log.Info("backup starting", "server_version", info.Version, "pg_dump", pgDump.Path, "database_bytes", info.SizeBytes)

	// Row counts come from the archive as it streams by (see counts.go).
	scan := startArchiveScan()
	res, err := streamDump(ctx, o, pgDump, m.ID, info.SizeBytes, scan)
	var lost *connLostError
	if errors.As(err, &lost) && ctx.Err() == nil {
		dc, started := o.Conn, info.Started
		if standby != nil {
			dc, started = *o.DumpConn, standby.info.Started
		}
		err = fmt.Errorf("%w (%s)", err, whyLost(ctx, dc, started))
	}
	if err != nil && standby != nil {
		err = standby.explain(ctx, err)
	}
	scanned, scanErr := scan.Finish()
	// The start plus the time elapsed, measured on the monotonic clock:
	// a wall clock stepped meanwhile (NTP) would make the manifest's
	// duration, which retries plan by, wrong or negative.
	m.FinishedAt = start.Add(now().Sub(began))
	m.DumpBytes, m.StoredBytes = res.dumpBytes, res.storedBytes
	if err == nil {
		for _, w := range res.warnings {
			log.Warn("pg_dump warned; the backup completed, the manifest records it", "warning", w)
		}
		m.Warnings = append(m.Warnings, res.warnings...)
		m.Status = storage.StatusCompleted
		m.DataKey = storage.DataKey(m.ID)
		m.SHA256, m.DumpSHA256 = res.storedSHA, res.dumpSHA
		storageStep(ctx, o.StallTimeout, func(ctx context.Context) error {
			captureExtras(ctx, o, &m, info.Major(), scanned, scanErr, log)
			return nil
		})
		// The manifest as it will be stored: with more tables than fit,
		// without their row counts, and a warning saying so.
		if fit := storage.FitManifest(m); len(fit.Tables) < len(m.Tables) {
			log.Warn("row counts left out of the manifest: too many tables to fit", "tables", len(m.Tables))
			m = fit
		}
		err = storageStep(ctx, o.StallTimeout, func(ctx context.Context) error {
			var cerr error
			manifestUnsure, cerr = commit(ctx, cat, m)
			return cerr
		})
		if err == nil {
			return m, nil
		}
	}
	m.Status = storage.StatusFailed
	m.Error = err.Error()
	m.Stopped = ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrStopped)
	// Nothing of it is kept (its objects are removed below, or left to
	// prune): StoredBytes would read as space in use.
	m.DataKey, m.SHA256, m.DumpSHA256, m.StoredBytes = "", "", "", 0
	m.GlobalsKey, m.GlobalsSHA256, m.Tables, m.TableCountMethod = "", "", nil, ""
	// Record the failure even when ctx was cancelled (SIGTERM): the operator
	// should find out why a backup is missing. Best effort: storage may be
	// what failed.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	werr := cat.WriteManifest(recordCtx, m)
	if werr != nil {
		log.Warn("could not record the failed backup", "err", werr)
		// Without the failed manifest on record, leave any data object
		// alone: a completed manifest may have landed after all (a
		// timeout after S3 committed it), and prune collects true
		// orphans. Unless the store answered both writes that it is
		// full: then no manifest was stored, and the objects of this id
		// hold the very room the next attempt needs, for ORPHAN_GRACE
		// if left to prune.
		if !noSpace(err) || !noSpace(werr) {
			return m, fmt.Errorf("backup %s of %s: %w", m.ID, info.Database, err)
		}
	}
	if manifestUnsure {
		// The completed manifest's write failed without saying it did
		// not land: one held up in the network or the server may land
		// after the failed one, and would then name data removed here.
		// Left in place, it makes that late manifest a whole backup;
		// otherwise retention removes it with this failed record, once
		// a newer backup succeeds.
		log.Warn("left the failed backup's objects in place: its manifest write failed, and may still land; retention removes them with the failed record", "backup", m.ID)
		return m, fmt.Errorf("backup %s of %s: %w", m.ID, info.Database, err)
	}
	// The failure is on record, or nothing is: data objects of this id
	// are now orphans.
	for _, key := range []string{storage.DataKey(m.ID), storage.GlobalsKey(m.ID)} {
		if derr := o.Store.Delete(recordCtx, key); derr != nil && !errors.Is(derr, storage.ErrNotFound) {
			log.Warn("could not remove an object of the failed backup; prune will", "key", key, "err", derr)
		}
	}
	return m, fmt.Errorf("backup %s of %s: %w", m.ID, info.Database, err)
}

// noSpace reports whether err is a store saying it is full
// (storage.ErrNoSpace: a file system out of space, a quota used up, an S3
// server's 507 InsufficientStorage or quota refusal): an answer, after
// which nothing was stored. A bare ENOSPC or EDQUOT counts too: a store
// that does not mark its errors, and restore's own temporary file.
func noSpace(err error) bool {
	return errors.Is(err, storage.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// commit makes a backup visible: it checks the data object is really there
// at the size streamed, then writes the manifest. When the manifest write
// reports an error, the manifest may still have landed (a timeout after S3
// committed it), so it is read back before the backup is called failed;
// and it may land later still, which unsure says (an error from a store
// that said it is full is an answer: nothing was stored).
func commit(ctx context.Context, cat storage.Catalog, m storage.Manifest) (unsure bool, err error) {
	objs, err := cat.Store.List(ctx, m.ID+"/")
	if err != nil {
		return false, fmt.Errorf("check data object: %w", err)
	}
	found := false
	for _, ob := range objs {
		if ob.Key == m.DataKey {
			if ob.Size != m.StoredBytes {
				return false, fmt.Errorf("data object %s holds %d bytes, %d were streamed", ob.Key, ob.Size, m.StoredBytes)
			}
			found = true
		}
	}
	if !found {
		return false, fmt.Errorf("data object %s vanished before its manifest was written (a concurrent prune?)", m.DataKey)
	}
	werr := cat.WriteManifest(ctx, m)
	if werr == nil {
		return false, nil
	}
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if got, err := cat.Manifest(readCtx, m.ID); err == nil && got.OK() && got.SHA256 == m.SHA256 {
		return false, nil
	}
	return mayLand(werr), fmt.Errorf("write manifest: %w", werr)
}

// mayLand reports whether a write that failed with err may still have
// stored, or store later, what it sent: no answer came (a timeout, a
// cancellation, a connection that broke) or the server failed (5xx). A
// refusal (4xx: access denied, a bad request; a store that is full) and
// an error before anything was sent are answers: nothing was stored.
func mayLand(err error) bool {
	if noSpace(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		return status.HTTPStatusCode() >= 500 || status.HTTPStatusCode() == 0
	}
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// checkLocation refuses to mix databases in one storage location: retention,
// `latest` and orphan pruning all work per location, so a second database
// there would have its backups pruned by the first's schedule and could be
// restored by `restore latest` in its place.
//
// A database is its name and its cluster: two clusters' "app" databases
// (staging and production) in one location would prune each other's
// backups. The cluster is its system identifier, which its physical
// replicas share and failover keeps (the host would not). A cluster also
// changes it when it is upgraded with pg_upgrade or restored into a new
// instance, which is the same database going on: so only the newest
// backup that records one decides, and newCluster (capture --new-cluster,
// once, after such a change) accepts a change; from then on the newest is
// this cluster's. Manifests of older versions record none.
//
// Nor does it let a database that was lost be backed up over its backups:
// one dropped and re-created (another oid), or emptied (no tables where the
// newest good backup had some), fails until newDatabase (capture
// --new-database, once) accepts it. Retention keeps a day's newest backup
// and a fixed number of days: backups of the empty database, taken on
// schedule while the team restores, would replace the good ones day by
// day.
func checkLocation(ctx context.Context, cat storage.Catalog, info ServerInfo, newCluster, newDatabase bool) error {
	ms, err := cat.Manifests(ctx, true)
	if err != nil {
		return fmt.Errorf("read the storage location: %w", err)
	}
	for _, m := range ms {
		if m.Database != "" && m.Database != info.Database {
			return fmt.Errorf("this storage location already holds backups of database %q (newest %s), not %q: give each database its own PGBACKUPS_STORAGE_URL prefix, because retention and `latest` work per location", m.Database, m.ID, info.Database)
		}
	}
	for _, m := range ms { // newest first
		if m.SystemID == "" {
			continue
		}
		if info.SystemID != "" && m.SystemID != info.SystemID && !newCluster {
			return fmt.Errorf("the newest backup in this storage location (%s) is of database %q of another cluster (system identifier %s; this server's is %s). If this database's cluster changed (pg_upgrade, a managed major-version upgrade, a restore into a new instance), run `pgbackups capture --new-cluster` once, and backups go on here; if it is another cluster's database of the same name, give each its own PGBACKUPS_STORAGE_URL prefix: retention and `latest` work per location", m.ID, m.Database, m.SystemID, info.SystemID)
		}
		break
	}
	if newCluster || newDatabase {
		return nil
	}
	for _, m := range ms { // newest first
		if !m.OK() {
			continue
		}
		const accept = "if this is the database you mean to back up from now on (a restore into it is done, or it is meant to be empty), run `pgbackups capture --new-database` once and backups go on; until then none is taken, so retention cannot replace the old database's backups with ones of this"
		switch {
		case m.DatabaseOID != 0 && info.DatabaseOID != 0 && m.DatabaseOID != info.DatabaseOID && (m.SystemID == "" || m.SystemID == info.SystemID):
			return fmt.Errorf("database %q was dropped and re-created since backup %s (pg_database oid %d then, %d now): %s", info.Database, m.ID, m.DatabaseOID, info.DatabaseOID, accept)
		case m.UserTables != nil && *m.UserTables > 0 && info.Tables == 0:
			// Counted the same way both times: the archive's table data
			// would also count an extension's tables (spatial_ref_sys).
			return fmt.Errorf("database %q holds no tables, and backup %s held %d: it was emptied or re-created since; %s", info.Database, m.ID, *m.UserTables, accept)
		}
		break
	}
	return nil
}

type streamResult struct {
	dumpBytes, storedBytes int64
	dumpSHA, storedSHA     string
	warnings               []string // pg_dump's own, from a dump that succeeded
}

// streamDump runs pg_dump and streams its output through zstd into the
// store under DataKey(id). Memory is the store's upload buffers plus the
// encoder's window, whatever the database size.
// observe sees every byte of pg_dump's output; its Write must not fail.
func streamDump(ctx context.Context, o CaptureOptions, pgDump Tool, id string, sizeHint int64, observe io.Writer) (streamResult, error) {
	var res streamResult
	// Cancelled when the upload fails, so pg_dump is stopped rather than
	// left blocked on a full pipe.
	parent, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	dc := o.Conn
	if o.DumpConn != nil {
		dc = *o.DumpConn
	}
	child, err := dc.forChild(os.TempDir())
	if err != nil {
		return res, err
	}
	defer child.cleanup()
	// A URL's application_name parameter wins over PGAPPNAME; monitors then
	// cannot find the dump's backend, and say so.
	child.env = append(child.env, "PGAPPNAME="+AppName(id))
	args := []string{"--format=custom", "--compress=0", "--no-password"}
	if o.LockWaitTimeout > 0 {
		args = append(args, "--lock-wait-timeout="+strconv.FormatInt(o.LockWaitTimeout.Milliseconds(), 10))
	}
	if child.dbname != "" {
		args = append(args, "--dbname="+child.dbname)
	}
	cmd, stderr := command(ctx, pgDump.Path, args, child.env)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("pg_dump: %w", err)
	}
	growPipe(stdout)
	if err := forkthread.Start(cmd); err != nil {
		return res, fmt.Errorf("pg_dump: start %s: %w", pgDump.Path, err)
	}
	if o.Started != nil {
		o.Started(cmd.Process.Pid, o.Logger)
	}
	// The monitors watch pg_dump and its backend: they stop when it exits,
	// not when the upload's tail is done (a warning that the backend is
	// gone, load samples for nothing, a pooled backend left lowered).
	stopMonitors := sync.OnceFunc(startMonitors(ctx, cancelCause, o.Monitors, Running{ID: id, AppName: AppName(id), PID: cmd.Process.Pid, Conn: dc, Logger: o.Logger}))
	defer stopMonitors()

	// One encoder goroutine: with concurrency 1 the encoder compresses
	// synchronously inside Write, on the producer's (lowered) thread below.
	// A block at a time is also less CPU than the pipelined encoder, and
	// the dump's own rate (one backend's COPY) is far below one core's zstd.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(o.CompressionLevel)),
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		cancel()
		cmd.Wait()
		return res, fmt.Errorf("zstd: %w", err)
	}
	pr, pw := io.Pipe()
	dumpHash, storedHash := sha256.New(), sha256.New()
	stored := &hashWriter{w: pw, h: storedHash}
	sealed := encrypting(stored, o.Recipients)
	enc.Reset(sealed)

	var src io.Reader = stdout
	if o.Throttle != nil {
		src = o.Throttle(src)
	}
	// A megabyte at a time through the limiter (and growPipe's pipe): see
	// readAhead.
	src = bufio.NewReaderSize(src, readAhead)
	if observe != nil {
		src = io.TeeReader(src, observe)
	}
	progress := o.Progress // also what the stall watch reads
	if progress == nil {
		progress = new(atomic.Int64)
	}
	counted := &countReader{r: src, h: dumpHash, progress: progress}
	if o.StallTimeout > 0 {
		defer watchStall(ctx, cancelCause, o.StallTimeout, progress)()
	}

	produced := make(chan error, 1)
	var dumpEnded atomic.Bool // set before the producer closes the pipe
	go func() {
		if o.Compressing != nil {
			// Never unlocked: the runtime ends the thread with the
			// goroutine instead of reusing it.
			runtime.LockOSThread()
			o.Compressing(o.Logger)
		}
		_, copyErr := io.Copy(enc, counted)
		if copyErr != nil {
			cancel() // the upload failed or the read broke: stop pg_dump
		}
		closeErr := enc.Close()
		if closeErr == nil {
			closeErr = sealed.Close() // age's last chunk
		} else {
			closeErr = fmt.Errorf("zstd: %w", closeErr)
		}
		waitErr := cmd.Wait()
		stopMonitors()
		var err error
		switch {
		case parent.Err() != nil:
			cause := context.Cause(parent)
			if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
				err = fmt.Errorf("cancelled: %w", cause)
			} else {
				err = fmt.Errorf("aborted: %w", cause)
			}
		case waitErr != nil && ctx.Err() != nil && copyErr != nil:
			err = copyErr // pg_dump was stopped because the upload failed
		case waitErr != nil:
			err = childError("pg_dump", waitErr, stderr)
			err = lostConnection(err, stderr.String())
			err = recoveryConflict(err, stderr.String())
			if tail := stderr.String(); strings.Contains(tail, "LOCK TABLE") && strings.Contains(tail, "timeout") {
				err = fmt.Errorf("%w (pg_dump gave up waiting PGBACKUPS_LOCK_WAIT_TIMEOUT=%s for a table lock another session holds, usually DDL or a migration; the daemon retries the backup)", err, o.LockWaitTimeout)
			}
			if lockTableFull(stderr.String()) {
				err = fmt.Errorf("%w (%s)", err, lockTableAdvice(ctx, dc))
			}
		case copyErr != nil:
			err = fmt.Errorf("read pg_dump output: %w", copyErr)
		case closeErr != nil:
			err = closeErr
		}
		// A nil error gives the uploader EOF, the only way it completes.
		dumpEnded.Store(true)
		pw.CloseWithError(err)
		produced <- err
	}()

	var n int64
	if sh, ok := o.Store.(sizeHinter); ok {
		n, err = sh.PutSized(ctx, storage.DataKey(id), pr, sizeHint)
	} else {
		n, err = o.Store.Put(ctx, storage.DataKey(id), pr)
	}
	// Unblock the producer if the upload stopped reading early.
	pr.CloseWithError(errUploadStopped(err))
	storeFirst := err != nil && !dumpEnded.Load()
	if storeFirst {
		// The store failed while pg_dump still runs: stop it now. It may
		// not write (and so find the pipe closed) for minutes while it
		// reads a big catalog or waits for a table lock, holding its
		// snapshot, its locks and the backup lock.
		cancel()
	}
	prodErr := <-produced
	res.dumpBytes, res.storedBytes = counted.n, n
	if prodErr != nil && !(storeFirst && parent.Err() == nil) {
		return res, prodErr
	}
	if err != nil {
		if cause := context.Cause(parent); parent.Err() != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			// A monitor or the stall watch stopped the upload after
			// pg_dump had finished: its reason, not the upload's.
			return res, fmt.Errorf("aborted: %w (store: %v)", cause, err)
		}
		return res, fmt.Errorf("store: %w", err)
	}
	if n != stored.n {
		return res, fmt.Errorf("store: stored %d bytes of %d", n, stored.n)
	}
	res.dumpSHA = hex.EncodeToString(dumpHash.Sum(nil))
	res.storedSHA = hex.EncodeToString(storedHash.Sum(nil))
	res.warnings = dumpWarnings(stderr.String())
	return res, nil
}

// maxDumpWarnings bounds how many of pg_dump's warnings a manifest keeps.
const maxDumpWarnings = 20

// dumpWarnings returns pg_dump's warnings ("pg_dump: warning: ..." lines)
// in its stderr: what it left out or could not do in a dump that still
// succeeded, such as "subscriptions not dumped because current user is not
// a superuser". Without them a backup would look complete.
func dumpWarnings(stderr string) []string {
	var out []string
	for line := range strings.Lines(stderr) {
		w, ok := strings.CutPrefix(strings.TrimSpace(line), "pg_dump: warning: ")
		if !ok || w == "" || slices.Contains(out, "pg_dump: "+w) {
			continue
		}
		if len(out) == maxDumpWarnings {
			out = append(out, "pg_dump: more warnings left out")
			break
		}
		out = append(out, "pg_dump: "+w)
	}
	return out
}

func errUploadStopped(err error) error {
	if err == nil {
		return io.ErrClosedPipe
	}
	return fmt.Errorf("upload stopped: %w", err)
}

// countReader counts and hashes what passes through it.
type countReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	progress *atomic.Int64 // kept at n, for other goroutines
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.h.Write(p[:n])
		c.n += int64(n)
		c.progress.Store(c.n)
	}
	return n, err
}

// errStalled is the cause of a backup aborted by watchStall or storageStep.
var errStalled = errors.New("no progress")

// storageStep runs one of a capture's calls to storage around the stream
// (reading the location before it, globals and the manifest after it)
// with timeout as its deadline, 0 for none: the stall watch covers only
// the stream, and these small calls must not hang on a wedged endpoint
// either, holding the backup lock until a restart. A call that runs out of
// time says so, whatever error the store made of its cancelled context.
func storageStep(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	if timeout <= 0 {
		return call(ctx)
	}
	sctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("%w: storage did not answer for %s (PGBACKUPS_STALL_TIMEOUT); a hung storage endpoint", errStalled, timeout))
	defer cancel()
	err := call(sctx)
	if cause := context.Cause(sctx); err != nil && ctx.Err() == nil && errors.Is(cause, errStalled) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// watchStall aborts the dump when moved has not changed for timeout: pg_dump
// wrote nothing, or storage took nothing so pg_dump could not write (an S3
// endpoint that accepts connections and never answers would otherwise hold
// the dump, its snapshot and the backup lock forever). The clock runs until
// stop is called, so a hung upload completion counts too.
func watchStall(ctx context.Context, abort context.CancelCauseFunc, timeout time.Duration, moved *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		every := min(timeout/4, 10*time.Second)
		t := time.NewTicker(every)
		defer t.Stop()
		last, since := moved.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if n := moved.Load(); n != last {
				last, since = n, time.Now()
				continue
			}
			if time.Since(since) >= timeout {
				abort(fmt.Errorf("%w for %s (PGBACKUPS_STALL_TIMEOUT) at %d dump bytes: pg_dump produced no output and storage took none; a hung storage endpoint or a dump source gone silent",
					errStalled, timeout, last))
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// hashWriter counts and hashes what it writes to w.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

// startMonitors runs each monitor in its own goroutine. A monitor's error
// cancels the dump with that error as the cause. The returned func stops
// the monitors and waits for them.
func startMonitors(ctx context.Context, abort context.CancelCauseFunc, ms []Monitor, r Running) (stop func()) {
	if len(ms) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m(ctx, r); err != nil && ctx.Err() == nil {
				abort(err)
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// connLostError is a pg_dump failure in which its connection to the server
// ended under it (or could not be made): the server went away.
type connLostError struct{ err error }

func (e *connLostError) Error() string { return e.err.Error() }
func (e *connLostError) Unwrap() error { return e.err }

// connLostSigns are what libpq and the server say, in pg_dump's stderr,
// when the connection ends: a session terminated (FATAL: terminating
// connection due to administrator command, ... idle-session timeout, ...
// conflict with recovery), a server gone (server closed the connection
// unexpectedly). Not a pg_dump that could not connect at all ("connection
// to server at ... failed: too many clients"): that is no lost session.
var connLostSigns = []string{
	"terminating connection",
	"server closed the connection unexpectedly",
	"could not receive data from server",
	"could not send data to server",
	"SSL SYSCALL error",
	"no connection to the server",
}

// lostConnection marks err as a lost connection when pg_dump's stderr says so.
func lostConnection(err error, stderr string) error {
	for _, sign := range connLostSigns {
		if strings.Contains(stderr, sign) {
			return &connLostError{err: err}
		}
	}
	return err
}

// whyLost looks at the server pg_dump lost its connection to and says
// what most likely happened: pg_dump's stderr shows only the end of its
// session, the same for a shutdown, a restart and pg_terminate_backend.
// started is the server's start time read before the dump (its own clock,
// so no two hosts' clocks are compared).
func whyLost(ctx context.Context, c Conn, started time.Time) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A restart takes a moment: ask again for a few seconds before calling
	// the server down.
	pc, err := Connect(ctx, c)
	for err != nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
			pc, err = Connect(ctx, c)
		}
	}
	if err != nil {
		return "pg_dump lost its connection, and the server does not accept one now: it was shut down or is restarting, or is out of reach; " + err.Error()
	}
	defer pc.Close(context.WithoutCancel(ctx))
	var up time.Time
	if err := pc.QueryRow(ctx, `SELECT pg_postmaster_start_time()`).Scan(&up); err != nil {
		return "pg_dump lost its connection to the server"
	}
	if up.After(started) {
		return fmt.Sprintf("pg_dump lost its connection: the server restarted during the dump, and is up again since %s", up.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("pg_dump lost its connection, but the server has been up since %s, before the dump began: its session was ended (pg_terminate_backend, a session timeout, the server recovering from a crashed backend, or, on a standby, a recovery conflict)", up.UTC().Format(time.RFC3339))
}

// lockTableFull reports whether pg_dump failed because the server's lock
// table is full ("out of shared memory", with the server's hint to raise
// max_locks_per_transaction). The setting's name is matched, not the
// message: the server may translate the message, never the name.
func lockTableFull(stderr string) bool {
	return strings.Contains(stderr, "max_locks_per_transaction")
}

// lockTableAdvice says why pg_dump ran out of locks and what to set, with
// the server's own numbers when it can read them. pg_dump takes ACCESS
// SHARE on every table it dumps (and reading a sequence locks it too) and
// holds them all to its end, so a database of many tables (a schema per
// tenant, thousands of partitions) needs a lock table bigger than the
// default of 64 x max_connections.
// https://www.postgresql.org/docs/current/runtime-config-locks.html
func lockTableAdvice(ctx context.Context, c Conn) string {
	const why = "the server's lock table is full: pg_dump holds a lock on every table and sequence it dumps until it ends, and the lock table, shared by every session, has room for about max_locks_per_transaction x (max_connections + max_prepared_transactions)"
	const fix = "in postgresql.conf (on a managed service, its parameter group) and restart the server; until then every retry fails the same way"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pc, err := Connect(ctx, c)
	if err != nil {
		return why + ": raise max_locks_per_transaction " + fix
	}
	defer pc.Close(context.WithoutCancel(ctx))
	var perXact, conns, prepared, rels int64
	err = pc.QueryRow(ctx, `SELECT current_setting('max_locks_per_transaction')::int,
		current_setting('max_connections')::int, current_setting('max_prepared_transactions')::int,
		(SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'S')
		   AND relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace))`).
		Scan(&perXact, &conns, &prepared, &rels)
	if err != nil || conns+prepared <= 0 {
		return why + ": raise max_locks_per_transaction " + fix
	}
	// Room for the dump's locks twice over, the rest for the application's,
	// rounded up to a multiple of 64 (the default).
	want := (2*rels + conns + prepared - 1) / (conns + prepared)
	want = max(perXact*2, (want+63)/64*64)
	return fmt.Sprintf("%s, here %d x (%d + %d) = %d locks, and this database has %d tables, partitions and sequences: set max_locks_per_transaction = %d or more %s",
		why, perXact, conns, prepared, perXact*(conns+prepared), rels, want, fix)
}

// clockSkewWarning says what a clock skew against the server (this host
// ahead if positive) does to the backups this host stamps.
func clockSkewWarning(skew time.Duration) string {
	way := "ahead of"
	if skew < 0 {
		way = "behind"
	}
	return fmt.Sprintf("this host's clock is %s %s the database server's: backup ids and times come from this host's clock, "+
		"and retention and `latest` order backups by them, so backups taken by hosts with different clocks are misordered, "+
		"and one stamped over 10 minutes ahead is listed as misdated elsewhere; keep this host's clock in sync (NTP)",
		skew.Abs().Round(time.Second), way)
}
