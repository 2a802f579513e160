package dump

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgbackups/pgbackups/storage"
)

// Row counts, and why they are taken this way.
//
// Capture runs pg_dump with --compress=0, so the custom-format archive it
// streams holds each table's rows as plain COPY text: one line per row,
// ended by '\n' (COPY's text format escapes newlines inside values as \n),
// then the `\.` end marker. Counting the lines of each TABLE DATA block as
// the archive streams past gives exact row counts, taken inside the very
// snapshot pg_dump dumped from, at no cost to the database: no second scan,
// no transaction held open beside pg_dump, nothing extra on a replica.
//
// The alternatives were worse. count(*) in a transaction sharing pg_dump's
// exported snapshot is exact too, but scans every table a second time, which
// on a big database is the load pgbackups exists to avoid. pg_class.reltuples
// is free but only an estimate, stale until autovacuum or ANALYZE catches up,
// so verify could only compare it loosely. It remains the fallback when an
// archive cannot be read (a newer archive format than this code knows):
// TableCountMethod then says "estimate" and verify compares within a
// tolerance and never fails on it.
//
// The layout read here is PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c
// (WriteHead, WriteToc) and pg_backup_custom.c (_StartData, _StartLOs, the
// chunk framing), archive versions 1.12 (PostgreSQL 11) to 1.16 (17, 18).

// How a manifest's table row counts were taken (Manifest.TableCountMethod).
const (
	// CountMethodArchive: exact, the rows in the archive's COPY data.
	CountMethodArchive = "archive"
	// CountMethodEstimate: pg_class.reltuples when the backup was taken.
	CountMethodEstimate = "estimate"
)

// ArchiveSummary is what a scan of a custom-format archive learned.
type ArchiveSummary struct {
	Version string // archive format version, e.g. "1.14"
	Entries int    // TOC entries
	// Tables lists every TABLE DATA entry in TOC order with the rows its
	// COPY data held (0 for a block that never arrived; see Complete).
	Tables []storage.TableCount
	// Subscriptions names the archive's logical replication subscriptions.
	Subscriptions []string
	// LargeObjects is how many large objects (pg_largeobject) the archive
	// holds the data of: they are no table's rows, and can be most of a
	// database (documents, images), so they are counted on their own.
	LargeObjects int64
	// Complete is true once every TABLE DATA block was read to its end
	// marker and the archive ended cleanly.
	Complete bool
	// Database holds the archive's entries about the database itself,
	// which pg_restore applies only with --create (see DatabaseEntry).
	Database []DatabaseEntry
}

// DatabaseEntry is a TOC entry about the dumped database itself: its
// DATABASE entry (whose Owner owns it), DATABASE PROPERTIES (ALTER
// DATABASE ... SET, ALTER ROLE ... IN DATABASE ... SET), and the COMMENT,
// ACL and SECURITY LABEL entries tagged "DATABASE name".
type DatabaseEntry struct {
	Desc, Tag, Owner, SQL string
}

// Archive format constants, as pg_backup_archiver.h defines them.
const (
	archCustom   = 1
	blkData      = 1
	blkBlobs     = 3
	vers1_12     = (1*256 + 12) * 256
	vers1_14     = (1*256 + 14) * 256
	vers1_15     = (1*256 + 15) * 256
	vers1_16     = (1*256 + 16) * 256
	versMaxKnown = (1*256+16)*256 + 255
)

// ErrArchiveCompressed is returned by ScanArchive for an archive whose data
// pg_dump compressed itself: its rows cannot be counted without inflating it.
var ErrArchiveCompressed = errors.New("archive data is compressed by pg_dump")

// maxNameLen bounds the TOC strings a scan keeps (tag, desc, namespace);
// longer ones are corrupt. Everything else is skipped without being held.
const maxNameLen = 64 << 10

// ScanArchive reads a pg_dump custom-format archive from r to its end and
// counts the rows of each table's data. It never holds more than a few
// kilobytes of the archive in memory. An error says where the archive stops
// making sense; the summary returned with it holds what was read before.
func ScanArchive(r io.Reader) (ArchiveSummary, error) {
	a := &archiveReader{r: bufio.NewReaderSize(r, 64<<10)}
	var sum ArchiveSummary
	if err := a.header(&sum); err != nil {
		return sum, err
	}
	tables, err := a.toc(&sum)
	if err != nil {
		return sum, err
	}
	if err := a.data(&sum, tables); err != nil {
		return sum, err
	}
	sum.Complete = true
	for _, t := range tables {
		if !t.done {
			sum.Complete = false
		}
	}
	return sum, nil
}

// archiveReader reads the archive's primitive types.
type archiveReader struct {
	r       *bufio.Reader
	version int
	intSize int
	offSize int
	off     int64 // bytes consumed, for error messages
}

func (a *archiveReader) fail(format string, args ...any) error {
	return fmt.Errorf("archive byte %d: %s", a.off, fmt.Sprintf(format, args...))
}

func (a *archiveReader) byte() (byte, error) {
	b, err := a.r.ReadByte()
	if err != nil {
		return 0, a.eof(err)
	}
	a.off++
	return b, nil
}

func (a *archiveReader) eof(err error) error {
	if err == io.EOF {
		return a.fail("unexpected end of archive")
	}
	return err
}

// int reads WriteInt's encoding: a sign byte, then intSize bytes, least
// significant first.
func (a *archiveReader) int() (int64, error) {
	sign, err := a.byte()
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := 0; i < a.intSize; i++ {
		b, err := a.byte()
		if err != nil {
			return 0, err
		}
		if i >= 8 && b != 0 {
			return 0, a.fail("integer out of range")
		}
		if i < 8 {
			v |= uint64(b) << (8 * i)
		}
	}
	if v > 1<<62 {
		return 0, a.fail("integer out of range")
	}
	if sign != 0 {
		return -int64(v), nil
	}
	return int64(v), nil
}

// str reads WriteStr's encoding: a length (-1 for NULL), then the bytes.
// Strings longer than keep are skipped and returned as "".
func (a *archiveReader) str(keep int) (s string, null bool, err error) {
	n, err := a.int()
	if err != nil {
		return "", false, err
	}
	if n == -1 {
		return "", true, nil
	}
	if n < 0 {
		return "", false, a.fail("negative string length %d", n)
	}
	if n > int64(keep) {
		return "", false, a.skip(n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(a.r, buf); err != nil {
		return "", false, a.eof(noUnexpected(err))
	}
	a.off += n
	return string(buf), false, nil
}

func noUnexpected(err error) error {
	if err == io.ErrUnexpectedEOF {
		return io.EOF
	}
	return err
}

func (a *archiveReader) skip(n int64) error {
	m, err := a.r.Discard(int(min(n, 1<<40)))
	a.off += int64(m)
	if err != nil {
		return a.eof(err)
	}
	return nil
}

func (a *archiveReader) header(sum *ArchiveSummary) error {
	magic := make([]byte, 5)
	if _, err := io.ReadFull(a.r, magic); err != nil || string(magic) != "PGDMP" {
		return errors.New("not a pg_dump custom-format archive (no PGDMP header)")
	}
	a.off = 5
	var v [6]byte
	for i := range v {
		b, err := a.byte()
		if err != nil {
			return err
		}
		v[i] = b
	}
	a.version = (int(v[0])*256+int(v[1]))*256 + int(v[2])
	sum.Version = fmt.Sprintf("%d.%d", v[0], v[1])
	if a.version < vers1_12 || a.version > versMaxKnown {
		return fmt.Errorf("archive version %d.%d.%d is not one this pgbackups reads (1.12 to 1.16)", v[0], v[1], v[2])
	}
	a.intSize, a.offSize = int(v[3]), int(v[4])
	if a.intSize < 1 || a.intSize > 16 || a.offSize < 1 || a.offSize > 16 {
		return a.fail("implausible integer size %d or offset size %d", a.intSize, a.offSize)
	}
	if v[5] != archCustom {
		return fmt.Errorf("archive format %d is not custom (%d)", v[5], archCustom)
	}
	if a.version >= vers1_15 {
		algo, err := a.byte()
		if err != nil {
			return err
		}
		if algo != 0 { // PG_COMPRESSION_NONE
			return ErrArchiveCompressed
		}
	} else {
		level, err := a.int()
		if err != nil {
			return err
		}
		if level != 0 {
			return ErrArchiveCompressed
		}
	}
	for range 7 { // creation time: sec, min, hour, mday, mon, year, isdst
		if _, err := a.int(); err != nil {
			return err
		}
	}
	for range 3 { // database name, server version, pg_dump version
		if _, _, err := a.str(0); err != nil {
			return err
		}
	}
	return nil
}

// tableData is one TABLE DATA entry being counted.
type tableData struct {
	idx  int // into ArchiveSummary.Tables
	done bool
}

func (a *archiveReader) toc(sum *ArchiveSummary) (map[int64]*tableData, error) {
	n, err := a.int()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, a.fail("negative TOC length %d", n)
	}
	tables := map[int64]*tableData{}
	for i := int64(0); i < n; i++ {
		id, err := a.int()
		if err != nil {
			return nil, err
		}
		if _, err := a.int(); err != nil { // hadDumper
			return nil, err
		}
		var tag, desc, namespace, defn, owner string
		fields := []*string{nil, nil, &tag, &desc} // tableoid, oid, tag, desc
		for _, f := range fields {
			s, _, err := a.str(maxNameLen)
			if err != nil {
				return nil, err
			}
			if f != nil {
				*f = s
			}
		}
		if _, err := a.int(); err != nil { // section
			return nil, err
		}
		for i := range 3 { // defn, dropStmt, copyStmt
			keep := 0
			if i == 0 && databaseEntry(desc, tag) {
				keep = maxDatabaseSQL
			}
			s, _, err := a.str(keep)
			if err != nil {
				return nil, err
			}
			defn = cmp.Or(defn, s)
		}
		if namespace, _, err = a.str(maxNameLen); err != nil {
			return nil, err
		}
		if _, _, err := a.str(0); err != nil { // tablespace
			return nil, err
		}
		if a.version >= vers1_14 {
			if _, _, err := a.str(0); err != nil { // tableam
				return nil, err
			}
		}
		if a.version >= vers1_16 {
			if _, err := a.int(); err != nil { // relkind
				return nil, err
			}
		}
		for i := range 2 { // owner, "false" (was WITH OIDS)
			s, _, err := a.str(maxNameLen)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				owner = s
			}
		}
		for { // dependencies, ended by a NULL string
			_, null, err := a.str(0)
			if err != nil {
				return nil, err
			}
			if null {
				break
			}
		}
		// pg_backup_custom.c's extra TOC data: an offset flag byte and
		// offSize bytes of offset.
		if err := a.skip(int64(1 + a.offSize)); err != nil {
			return nil, err
		}
		switch desc {
		case "TABLE DATA":
			tables[id] = &tableData{idx: len(sum.Tables)}
			sum.Tables = append(sum.Tables, storage.TableCount{Schema: namespace, Table: tag})
		case "SUBSCRIPTION":
			sum.Subscriptions = append(sum.Subscriptions, tag)
		}
		if databaseEntry(desc, tag) {
			sum.Database = append(sum.Database, DatabaseEntry{Desc: desc, Tag: tag, Owner: owner, SQL: defn})
		}
		sum.Entries++
	}
	return tables, nil
}

// maxDatabaseSQL bounds the statements of a database entry kept.
const maxDatabaseSQL = 1 << 20

// databaseEntry reports whether a TOC entry is about the database itself.
func databaseEntry(desc, tag string) bool {
	switch desc {
	case "DATABASE", "DATABASE PROPERTIES":
		return true
	case "COMMENT", "ACL", "SECURITY LABEL":
		return strings.HasPrefix(tag, "DATABASE ")
	}
	return false
}

// data reads the data blocks to the end of the archive, counting rows.
func (a *archiveReader) data(sum *ArchiveSummary, tables map[int64]*tableData) error {
	for {
		kind, err := a.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		a.off++
		id, err := a.int()
		if err != nil {
			return err
		}
		switch kind {
		case blkData:
			t := tables[id]
			var lc lineCounter
			if err := a.chunks(&lc); err != nil {
				return err
			}
			if t != nil {
				sum.Tables[t.idx].Rows = lc.rows
				t.done = true
			}
		case blkBlobs:
			for {
				oid, err := a.int()
				if err != nil {
					return err
				}
				if oid == 0 {
					break
				}
				sum.LargeObjects++
				if err := a.chunks(nil); err != nil {
					return err
				}
			}
		default:
			return a.fail("unknown data block type %d", kind)
		}
	}
}

// chunks reads length-prefixed chunks up to the zero-length end marker,
// feeding them to lc when it is not nil.
func (a *archiveReader) chunks(lc *lineCounter) error {
	for {
		n, err := a.int()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			return a.fail("negative chunk length %d", n)
		}
		if lc == nil {
			if err := a.skip(n); err != nil {
				return err
			}
			continue
		}
		for n > 0 {
			b, err := a.r.Peek(int(min(n, int64(a.r.Size()))))
			if len(b) == 0 && err != nil {
				return a.eof(err)
			}
			lc.write(b)
			a.r.Discard(len(b))
			a.off += int64(len(b))
			n -= int64(len(b))
		}
	}
}

// lineCounter counts the rows of COPY text: lines up to the `\.` marker.
type lineCounter struct {
	rows  int64
	line  [2]byte // the current line's first bytes
	n     int     // the current line's length so far
	ended bool    // the `\.` marker was seen: nothing after it is a row
}

func (lc *lineCounter) write(b []byte) {
	for len(b) > 0 && !lc.ended {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		for _, c := range part {
			if lc.n < len(lc.line) {
				lc.line[lc.n] = c
			}
			lc.n++
			if lc.n > len(lc.line) {
				break // long enough not to be the marker; length is all that matters
			}
		}
		if i < 0 {
			return
		}
		if lc.n == 2 && lc.line == [2]byte{'\\', '.'} {
			lc.ended = true
		} else {
			lc.rows++
		}
		lc.n = 0
		b = b[i+1:]
	}
}

// archiveScanner runs ScanArchive over bytes written to it, in a goroutine
// it owns, so a stream can be counted as it passes by (io.TeeReader). Its
// Write never fails: a scan that gives up keeps draining, and the stream it
// watches goes on undisturbed.
type archiveScanner struct {
	pw   *io.PipeWriter
	done chan struct{}
	sum  ArchiveSummary
	err  error
}

func startArchiveScan() *archiveScanner {
	pr, pw := io.Pipe()
	s := &archiveScanner{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.sum, s.err = ScanArchive(pr)
		io.Copy(io.Discard, pr)
		pr.Close()
	}()
	return s
}

func (s *archiveScanner) Write(p []byte) (int, error) {
	s.pw.Write(p) // fails only once Finish closed the pipe
	return len(p), nil
}

// Finish ends the stream and returns the scan's result.
func (s *archiveScanner) Finish() (ArchiveSummary, error) {
	s.pw.Close()
	<-s.done
	return s.sum, s.err
}

// estimateCounts reads pg_class.reltuples of every user table: the fallback
// when the archive could not be counted. Tables never analyzed (reltuples
// -1 since PostgreSQL 14) are left out.
func estimateCounts(ctx context.Context, c Conn) ([]storage.TableCount, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, c.reltuples::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND c.reltuples >= 0
		  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("estimate row counts on %s: %s", c, Redact(err, c))
	}
	defer rows.Close()
	var out []storage.TableCount
	for rows.Next() {
		var t storage.TableCount
		if err := rows.Scan(&t.Schema, &t.Table, &t.Rows); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("estimate row counts on %s: %s", c, Redact(err, c))
	}
	return out, nil
}

// CountCheck compares one table's recorded row count with one observed later.
type CountCheck struct {
	Schema, Table string
	Recorded      int64 // in the manifest
	Got           int64 // -1: the table is missing
	OK            bool
}

// estimateTolerance is how far an estimated count may be from the truth
// before verify mentions it: reltuples drifts between ANALYZE runs.
func estimateTolerance(recorded int64) int64 { return max(1000, recorded/5) }

// CompareCounts checks got (schema.table -> rows) against the counts in m.
// Exact counts must match exactly; estimates within a tolerance.
func CompareCounts(m storage.Manifest, got map[[2]string]int64) []CountCheck {
	var out []CountCheck
	for _, t := range m.Tables {
		c := CountCheck{Schema: t.Schema, Table: t.Table, Recorded: t.Rows, Got: -1}
		if n, ok := got[[2]string{t.Schema, t.Table}]; ok {
			c.Got = n
			if m.TableCountMethod == CountMethodEstimate {
				d := n - t.Rows
				c.OK = max(d, -d) <= estimateTolerance(t.Rows)
			} else {
				c.OK = n == t.Rows
			}
		}
		out = append(out, c)
	}
	return out
}

// countRows counts, exactly, the rows of each listed table in c's database.
// A table that does not exist there is left out of the result. Each count is
// of the table's own rows (FROM ONLY), as pg_dump copied them: a parent's
// count(*) would include its inheritance children's.
//
// Row-level security must not hide rows from the count, as it hid none
// from pg_dump (which sets row_security off and fails rather than dump a
// filtered table). A superuser or BYPASSRLS role sees every row anyway; any
// other role counts with row_security off too, so a policy that would
// filter makes the count fail instead of coming out short. The restoring
// role owns what it restored (verify restores --no-owner), and an owner is
// exempt unless the table FORCEs row level security: then the count is
// taken with FORCE lifted in a transaction that is rolled back, and the
// restored table stays as the backup has it.
// https://www.postgresql.org/docs/current/ddl-rowsecurity.html
//
// A database with a schema per tenant has tens of thousands of tables, so
// the round trips are batched: one query finds which tables exist, and one
// statement counts up to countBatch of them. A table at a time, that was two
// round trips per table: 7.6s for 20,000 small tables over loopback, minutes
// to a scratch server in another region.
func countRows(ctx context.Context, c Conn, tables []storage.TableCount) (map[[2]string]int64, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// row_security exists from PostgreSQL 9.5, as row level security does.
	if _, err := conn.Exec(ctx, `SELECT set_config('row_security', 'off', false) WHERE current_setting('server_version_num')::int >= 90500`); err != nil {
		return nil, fmt.Errorf("count rows on %s: %s", c, Redact(err, c))
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = pgx.Identifier{t.Schema, t.Table}.Sanitize()
	}
	var exists []bool
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(to_regclass(n) IS NOT NULL ORDER BY i), '{}')
		FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)`, names).Scan(&exists); err != nil {
		return nil, fmt.Errorf("count rows on %s: %s", c, Redact(err, c))
	}
	if len(exists) != len(tables) {
		return nil, fmt.Errorf("count rows on %s: asked about %d tables, told about %d", c, len(tables), len(exists))
	}
	var present []int
	for i, ok := range exists {
		if ok {
			present = append(present, i)
		}
	}
	got := map[[2]string]int64{}
	for len(present) > 0 {
		batch := present[:min(countBatch, len(present))]
		present = present[len(batch):]
		ns, err := countMany(ctx, conn, names, batch)
		if err == nil {
			for k, i := range batch {
				got[[2]string{tables[i].Schema, tables[i].Table}] = ns[k]
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("count rows on %s: %w", c, ctx.Err())
		}
		// A table of the batch refused (row-level security, a privilege)
		// or went away: a table at a time handles it, or names it.
		for _, i := range batch {
			t := tables[i]
			n, found, err := countOne(ctx, conn, names[i])
			if err != nil {
				return nil, fmt.Errorf("count rows of %s.%s on %s: %s", t.Schema, t.Table, c, Redact(err, c))
			}
			if found {
				got[[2]string{t.Schema, t.Table}] = n
			}
		}
	}
	return got, nil
}

// countBatch is how many tables one statement of countRows counts: enough
// to make round trips negligible, few enough that the statement stays small
// (a few tens of KiB with 63-byte names) and its locks (one per table, held
// to its end) fit a server's default lock table many times over.
const countBatch = 100

// countMany counts the tables names[i] for each i in batch, in one
// statement: one row, a column per table.
func countMany(ctx context.Context, conn *pgx.Conn, names []string, batch []int) ([]int64, error) {
	var sql strings.Builder
	sql.WriteString("SELECT ")
	for k, i := range batch {
		if k > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString("(SELECT count(*) FROM ONLY " + names[i] + ")")
	}
	ns := make([]int64, len(batch))
	dest := make([]any, len(batch))
	for k := range ns {
		dest[k] = &ns[k]
	}
	return ns, conn.QueryRow(ctx, sql.String()).Scan(dest...)
}

// countOne counts one table, lifting FORCE ROW LEVEL SECURITY for the
// count where it must; found is false when the table does not exist.
func countOne(ctx context.Context, conn *pgx.Conn, name string) (n int64, found bool, err error) {
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&found); err != nil || !found {
		return 0, false, err
	}
	n, err = countOnly(ctx, conn, name)
	if isRowSecurityRefusal(ctx, conn, name, err) {
		n, err = countUnforced(ctx, conn, name)
	}
	return n, true, err
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func countOnly(ctx context.Context, q queryRower, name string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, "SELECT count(*) FROM ONLY "+name).Scan(&n)
	return n, err
}

// isRowSecurityRefusal reports whether err is the refusal a query gets,
// with row_security off, from a table whose policies would filter it for
// this role: insufficient privilege on a table with row level security
// enabled. Judged by the catalog, not by the message, which the server
// may translate.
func isRowSecurityRefusal(ctx context.Context, conn *pgx.Conn, name string, err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		return false
	}
	var rls bool
	qerr := conn.QueryRow(ctx, `SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass`, name).Scan(&rls)
	return qerr == nil && rls
}

// countUnforced counts a table that forces row level security on its owner,
// as that owner, with FORCE lifted in a transaction rolled back afterwards.
func countUnforced(ctx context.Context, conn *pgx.Conn, name string) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "ALTER TABLE ONLY "+name+" NO FORCE ROW LEVEL SECURITY"); err != nil {
		return 0, fmt.Errorf("row-level security hides rows of this table from this role, which cannot lift it (%w): count as its owner, a superuser or a BYPASSRLS role", err)
	}
	return countOnly(ctx, tx, name)
}

// captureExtras records what a completed dump needs beyond its data: row
// counts and the cluster's globals. Neither may fail the backup, whose data
// is already safely stored: a problem becomes a warning in the manifest.
func captureExtras(ctx context.Context, o CaptureOptions, m *storage.Manifest, major int, scan ArchiveSummary, scanErr error, log *slog.Logger) {
	if scanErr == nil && scan.Complete {
		m.Tables, m.TableCountMethod = scan.Tables, CountMethodArchive
		m.LargeObjects = &scan.LargeObjects
	} else {
		if scanErr == nil {
			scanErr = errors.New("some table data never arrived")
		}
		log.Warn("could not count rows in the archive; recording estimates", "err", scanErr)
		est, err := estimateCounts(ctx, o.Conn)
		if err != nil {
			m.Warnings = append(m.Warnings, "no row counts recorded: "+err.Error())
		} else {
			m.Tables, m.TableCountMethod = est, CountMethodEstimate
			m.Warnings = append(m.Warnings, "row counts are pg_class estimates: the archive could not be counted: "+scanErr.Error())
		}
	}
	if o.SkipGlobals {
		return
	}
	if err := captureGlobals(ctx, o, m, major, log); err != nil {
		m.Warnings = append(m.Warnings, "globals (roles, tablespaces) were not stored: "+err.Error())
		log.Warn("globals not stored", "err", err)
	}
}
