package dump

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/internal/forkthread"
	"github.com/pgbackups/pgbackups/storage"
)

// Globals are the cluster-wide objects a database dump leaves out: roles,
// role memberships and settings, tablespaces. Without them a dump restored
// into a new cluster fails on its first ALTER ... OWNER TO, so capture
// stores pg_dumpall --globals-only next to the dump.

// maxGlobalsBytes bounds the globals SQL held in memory, at capture and at
// restore. It is a few hundred bytes per role: 64 MiB is ~200,000 roles.
const maxGlobalsBytes = 64 << 20

// captureGlobals runs pg_dumpall --globals-only against the database's
// cluster and stores it, zstd-compressed, at storage.GlobalsKey(m.ID),
// filling m's GlobalsKey and GlobalsSHA256. A role that cannot read
// pg_authid (anything but a superuser) gets --no-role-passwords and a
// warning in m.Warnings: those roles come back without passwords.
func captureGlobals(ctx context.Context, o CaptureOptions, m *storage.Manifest, major int, log *slog.Logger) error {
	canRead, err := canReadAuthID(ctx, o.Conn)
	if err != nil {
		return err
	}
	tool, err := FindDumpTool(ctx, "pg_dumpall", o.PgBinDir, major)
	if err != nil {
		return err
	}
	child, err := o.Conn.forChild(os.TempDir())
	if err != nil {
		return err
	}
	defer child.cleanup()
	args := []string{"--globals-only", "--no-password"}
	if !canRead {
		args = append(args, "--no-role-passwords")
		msg := fmt.Sprintf("%s: role %q cannot read pg_authid (only a superuser can); set passwords again after restoring roles", noRolePasswords, o.Conn.User())
		m.Warnings = append(m.Warnings, msg)
		log.Warn("globals stored without role passwords", "role", o.Conn.User(), "reason", "cannot read pg_authid")
	}
	if child.dbname != "" {
		args = append(args, "--dbname="+child.dbname)
	}
	cmd, stderr := command(ctx, tool.Path, args, child.env)
	out := &limitedBuffer{max: maxGlobalsBytes}
	cmd.Stdout = out
	if err := forkthread.Run(cmd); err != nil {
		return childError("pg_dumpall", err, stderr)
	}
	if out.over {
		return fmt.Errorf("pg_dumpall: more than %d bytes of globals", maxGlobalsBytes)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(o.CompressionLevel)))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	compressed := enc.EncodeAll(out.Bytes(), nil)
	enc.Close()
	stored := compressed
	if len(o.Recipients) > 0 {
		// Role password hashes are in it: sealed like the data.
		var sealed bytes.Buffer
		w := encrypting(&sealed, o.Recipients)
		if _, err := w.Write(compressed); err != nil {
			return fmt.Errorf("age: %w", err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("age: %w", err)
		}
		stored = sealed.Bytes()
	}
	key := storage.GlobalsKey(m.ID)
	if _, err := o.Store.Put(ctx, key, bytes.NewReader(stored)); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	sum := sha256.Sum256(stored)
	m.GlobalsKey, m.GlobalsSHA256 = key, hex.EncodeToString(sum[:])
	return nil
}

// canReadAuthID reports whether the connection's role may read pg_authid,
// which pg_dumpall needs to dump role passwords.
func canReadAuthID(ctx context.Context, c Conn) (bool, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')`).Scan(&ok); err != nil {
		return false, fmt.Errorf("check pg_authid access on %s: %s", c, Redact(err, c))
	}
	return ok, nil
}

// limitedBuffer keeps up to max bytes and notes whether more came.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return len(p), nil
}

// ErrNoGlobals is returned when a restore asks for globals the backup does
// not have.
var ErrNoGlobals = errors.New("no globals stored with this backup")

// ReadGlobals fetches a backup's globals SQL, checking the stored object's
// sha256 against the manifest. Its errors do not name the backup: the
// caller's do.
func ReadGlobals(ctx context.Context, st storage.Store, m storage.Manifest, ids []age.Identity) ([]byte, error) {
	if m.GlobalsKey == "" {
		return nil, fmt.Errorf("%w (it was taken with PGBACKUPS_GLOBALS=false, or pg_dumpall failed: see `pgbackups info %s`)", ErrNoGlobals, m.ID)
	}
	if err := m.CheckGlobals(); err != nil {
		return nil, fmt.Errorf("globals: %w", err)
	}
	rc, err := st.Get(ctx, m.GlobalsKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, missingObject(ctx, st, m, "globals", m.GlobalsKey)
	}
	if err != nil {
		return nil, fmt.Errorf("globals: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	stored := &hashingReader{r: rc, h: h}
	plain, err := decrypting(stored, m, m.GlobalsKey, ids)
	if err != nil {
		if rerr := stored.failed(); rerr != nil {
			return nil, fmt.Errorf("globals: %w", rerr)
		}
		return nil, fmt.Errorf("globals: %w", err)
	}
	dec, err := zstd.NewReader(plain, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("globals: zstd: %w", err)
	}
	defer dec.Close()
	out := &limitedBuffer{max: maxGlobalsBytes}
	if _, err := io.Copy(out, dec); err != nil {
		if rerr := stored.failed(); rerr != nil {
			return nil, fmt.Errorf("globals: %w", rerr)
		}
		return nil, fmt.Errorf("globals %s: %w: %v", m.GlobalsKey, ErrCorrupt, err)
	}
	if out.over {
		return nil, fmt.Errorf("globals %s: more than %d bytes", m.GlobalsKey, maxGlobalsBytes)
	}
	if _, err := io.Copy(io.Discard, plain); err != nil { // age's last chunk
		if rerr := stored.failed(); rerr != nil {
			return nil, fmt.Errorf("globals: %w", rerr)
		}
		return nil, fmt.Errorf("globals %s: %w: %v", m.GlobalsKey, ErrCorrupt, err)
	}
	if _, err := io.Copy(io.Discard, stored); err != nil {
		return nil, fmt.Errorf("globals: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.GlobalsSHA256 {
		return nil, fmt.Errorf("globals %s: %w: sha256 %s, manifest says %s", m.GlobalsKey, ErrCorrupt, got, m.GlobalsSHA256)
	}
	return out.Bytes(), nil
}

// globalsScript is the script psql runs for globals sql: RewriteGlobals's,
// without pg_dumpall's own \restrict and \unrestrict lines (applyGlobals
// restricts psql itself, with a key of its own).
func globalsScript(sql []byte) []byte {
	var out []byte
	for line := range bytes.Lines(RewriteGlobals(sql)) {
		if restrictLine.Match(line) {
			continue
		}
		out = append(out, line...)
	}
	return out
}

// restrictLine is a \restrict or \unrestrict line as pg_dumpall writes it.
var restrictLine = regexp.MustCompile(`^\\(un)?restrict [A-Za-z0-9]+\r?\n?$`)

// restrictable reports whether psql of version (as printed, "15.18") has
// \restrict: 13.22, 14.19, 15.14, 16.10, 17.6, and 18 on.
func restrictable(version string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		if _, err := fmt.Sscanf(version, "%d", &major); err != nil {
			return false
		}
	}
	since := map[int]int{13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
	if m, ok := since[major]; ok {
		return minor >= m
	}
	return major >= 18
}

// restrictKey is a random \restrict key.
func restrictKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("restrict key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// psqlMetaCommand finds the first psql meta-command in sql: a backslash
// outside quotes, quoted identifiers, comments and dollar quotes, other
// than the \restrict and \unrestrict lines pg_dumpall 17.6 and others
// write. It returns the line and the command's first bytes.
func psqlMetaCommand(sql []byte) (line int, head string, found bool) {
	const (
		plain = iota
		single
		double
		lineComment
		blockComment
		dollar
	)
	state, depth, tag := plain, 0, ""
	line, lineStart := 1, 0
	next := func(i int) byte {
		if i+1 < len(sql) {
			return sql[i+1]
		}
		return 0
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c == '\n' {
			line, lineStart = line+1, i+1
			if state == lineComment {
				state = plain
			}
			continue
		}
		switch state {
		case plain:
			switch {
			case c == '\'':
				state = single
			case c == '"':
				state = double
			case c == '-' && next(i) == '-':
				state, i = lineComment, i+1
			case c == '/' && next(i) == '*':
				state, depth, i = blockComment, 1, i+1
			case c == '$':
				if t := openingDollarQuote(sql[i:]); t != "" {
					state, tag, i = dollar, t, i+len(t)-1
				}
			case c == '\\':
				end := bytes.IndexByte(sql[i:], '\n')
				if end < 0 {
					end = len(sql) - i
				}
				rest := string(sql[i : i+end])
				if i == lineStart && (strings.HasPrefix(rest, `\restrict `) || strings.HasPrefix(rest, `\unrestrict `)) {
					i += end - 1
					continue
				}
				return line, rest[:min(len(rest), 40)], true
			}
		case single, double:
			quote := byte('\'')
			if state == double {
				quote = '"'
			}
			if c == quote {
				if next(i) == quote {
					i++ // a doubled quote stays inside
				} else {
					state = plain
				}
			}
		case blockComment:
			switch {
			case c == '*' && next(i) == '/':
				depth, i = depth-1, i+1
				if depth == 0 {
					state = plain
				}
			case c == '/' && next(i) == '*':
				depth, i = depth+1, i+1
			}
		case dollar:
			if bytes.HasPrefix(sql[i:], []byte(tag)) {
				state, i = plain, i+len(tag)-1
			}
		}
	}
	return 0, "", false
}

// openingDollarQuote is the dollar quote b starts with ($$, $tag$), or "".
func openingDollarQuote(b []byte) string {
	for j := 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '$':
			return string(b[:j+1])
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || j > 1 && c >= '0' && c <= '9':
		default:
			return ""
		}
	}
	return ""
}

// RewriteGlobals makes pg_dumpall's globals tolerate roles that already
// exist. pg_dumpall writes each role as two lines,
//
//	CREATE ROLE name;
//	ALTER ROLE name WITH LOGIN ... PASSWORD '...';
//
// and the ALTER would reset an existing role's attributes and password:
// restoring into a cluster whose superuser is also "postgres" would change
// that superuser's password to the old cluster's, locking out the very
// connection doing the restore. Each pair becomes a DO block that creates
// and alters the role only when it does not exist, and otherwise leaves it
// as it is with a NOTICE. Every other line passes through unchanged.
//
// pg_dumpall names every attribute, NOSUPERUSER included, and only a
// superuser may name SUPERUSER, REPLICATION or BYPASSRLS either way (from
// PostgreSQL 16 CREATEDB and CREATEROLE need the restoring role to have
// them): as the CREATEROLE user of a managed service the ALTER would fail
// and, in one block, take the CREATE with it. So an ALTER refused for want
// of privilege is retried without those attributes, with a WARNING naming
// any that were meant to be granted.
func RewriteGlobals(sql []byte) []byte {
	var out bytes.Buffer
	lines := strings.SplitAfter(string(sql), "\n")
	for i := 0; i < len(lines); i++ {
		name, ok := createRoleName(lines[i])
		if !ok || i+1 >= len(lines) {
			out.WriteString(lines[i])
			continue
		}
		alter := strings.TrimRight(lines[i+1], "\r\n")
		if !strings.HasPrefix(alter, "ALTER ROLE "+name+" WITH") || !strings.HasSuffix(alter, ";") {
			out.WriteString(lines[i])
			continue
		}
		create := strings.TrimRight(lines[i], "\r\n")
		literal := "'" + strings.ReplaceAll(name, "'", "''") + "'"
		apply := alterWithFallbacks(alter, name, literal, "\t\t", attributeSteps, nil)
		body := fmt.Sprintf("BEGIN\n\tIF to_regrole(%s) IS NULL THEN\n\t\t%s\n%s\tELSE\n\t\tRAISE NOTICE 'role %% already exists: not re-created (its password and attributes are kept)', %s;\n\tEND IF;\nEND\n",
			literal, create, apply, literal)
		tag := dollarTag(body)
		fmt.Fprintf(&out, "DO %s\n%s%s;\n", tag, body, tag)
		i++
	}
	return out.Bytes()
}

// WithoutTablespaces drops pg_dumpall's one-line tablespace statements
// (CREATE, ALTER, GRANT and REVOKE ON TABLESPACE), for --no-tablespaces:
// a server without the backup's tablespace directories cannot create them,
// and the restore puts everything in the target's default anyway. A
// COMMENT ON TABLESPACE (its text may span lines) is left: psql reports it
// failing and goes on.
func WithoutTablespaces(sql []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(sql), "\n") {
		stmt := strings.TrimRight(line, "\r\n")
		if strings.HasSuffix(stmt, ";") && (strings.HasPrefix(stmt, "CREATE TABLESPACE ") || strings.HasPrefix(stmt, "ALTER TABLESPACE ") ||
			(strings.HasPrefix(stmt, "GRANT ") || strings.HasPrefix(stmt, "REVOKE ")) && strings.Contains(stmt, " ON TABLESPACE ")) {
			continue
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// attributeSteps are the role attributes a CREATEROLE user may be refused
// naming, left out a step at a time: SUPERUSER, REPLICATION and BYPASSRLS
// always need a superuser; from PostgreSQL 16, CREATEDB and CREATEROLE
// (either way) need the restoring role to have them itself, while older
// versions let a CREATEROLE user grant them, so they are kept unless the
// first retry is refused too.
var attributeSteps = []map[string]bool{
	{"SUPERUSER": true, "NOSUPERUSER": true, "REPLICATION": true, "NOREPLICATION": true, "BYPASSRLS": true, "NOBYPASSRLS": true},
	{"CREATEDB": true, "NOCREATEDB": true, "CREATEROLE": true, "NOCREATEROLE": true},
}

// alterWithFallbacks renders alter, run at indent, and if it is refused
// for want of privilege, alter without the attributes of the next step
// (and so on), with a WARNING naming any left out that were meant to be
// granted; warned lists those earlier steps already left out.
func alterWithFallbacks(stmt, name, literal, indent string, steps []map[string]bool, warned []string) string {
	warn := func(at string, warned []string) string {
		if len(warned) == 0 {
			return ""
		}
		return fmt.Sprintf("%sRAISE WARNING 'role %%: created without %s (this role may not grant them)', %s;\n", at, strings.Join(warned, " "), literal)
	}
	mine := warned
	for len(steps) > 0 {
		lesser, dropped := withoutAttributes(stmt, name, steps[0])
		steps = steps[1:]
		if lesser == stmt {
			continue // nothing of this step named: on to the next
		}
		if dropped != "" {
			warned = append(warned[:len(warned):len(warned)], dropped)
		}
		next := indent + "\tNULL;\n" + warn(indent+"\t", warned)
		if lesser != "" {
			next = alterWithFallbacks(lesser, name, literal, indent+"\t", steps, warned)
		}
		return indent + "BEGIN\n" + indent + "\t" + stmt + "\n" + warn(indent+"\t", mine) +
			indent + "EXCEPTION WHEN insufficient_privilege THEN\n" + next + indent + "END;\n"
	}
	return indent + stmt + "\n" + warn(indent, mine)
}

// withoutAttributes returns pg_dumpall's "ALTER ROLE name WITH ...;"
// without the attributes in drop ("" when nothing is left), and the ones
// of them that grant something (not NO...), space-separated. The attribute
// keywords come before the first quoted value (PASSWORD, VALID UNTIL),
// which is kept as it is.
func withoutAttributes(alter, name string, drop map[string]bool) (lesser, dropped string) {
	prefix := "ALTER ROLE " + name + " WITH "
	rest := strings.TrimSuffix(strings.TrimPrefix(alter, prefix), ";")
	words, quoted := rest, ""
	if i := strings.IndexByte(rest, '\''); i >= 0 {
		words, quoted = rest[:i], rest[i:]
	}
	var kept, granted []string
	for _, w := range strings.Fields(words) {
		switch {
		case !drop[w]:
			kept = append(kept, w)
		case !strings.HasPrefix(w, "NO"):
			granted = append(granted, w)
		}
	}
	attrs := strings.TrimSpace(strings.Join(kept, " ") + " " + quoted)
	if attrs == "" {
		return "", strings.Join(granted, " ")
	}
	return prefix + attrs + ";", strings.Join(granted, " ")
}

// createRoleName returns the (quoted as needed) role name of a
// "CREATE ROLE name;" line.
func createRoleName(line string) (string, bool) {
	line = strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(line, "CREATE ROLE ")
	if !ok || !strings.HasSuffix(rest, ";") {
		return "", false
	}
	name := strings.TrimSuffix(rest, ";")
	if name == "" || strings.ContainsAny(name, " \t") && !strings.HasPrefix(name, `"`) {
		return "", false
	}
	return name, true
}

// dollarTag picks a dollar-quote tag that does not occur in body.
func dollarTag(body string) string {
	tag := "$pgbackups$"
	for n := 1; strings.Contains(body, tag); n++ {
		tag = fmt.Sprintf("$pgbackups%d$", n)
	}
	return tag
}

// globalsMessagesBytes bounds psql's messages kept while applying globals.
const globalsMessagesBytes = 1 << 20

// applyGlobals runs the (rewritten) globals SQL on the target's cluster
// through psql. ON_ERROR_STOP stays off: a statement the target refuses (a
// tablespace whose directory does not exist there, a superuser-only
// attribute on a managed service) is reported and the rest still applies,
// so the restore can go on; pg_restore then fails clearly if an owner is
// still missing. It returns psql's messages: NOTICEs for roles kept, ERRORs
// for statements refused.
func applyGlobals(ctx context.Context, target Conn, psql Tool, script []byte) ([]string, error) {
	child, err := target.forChild(os.TempDir())
	if err != nil {
		return nil, err
	}
	defer child.cleanup()
	args := []string{"--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=0", "--file=-"}
	if child.dbname != "" {
		args = append(args, "--dbname="+child.dbname)
	}
	cmd, stderr := command(ctx, psql.Path, args, child.env)
	// Its messages are the notes, one NOTICE per role kept: a cluster with
	// hundreds of roles would push the ERRORs out of the usual tail.
	stderr = newTailBuffer(globalsMessagesBytes)
	cmd.Stderr = stderr
	// An error's CONTEXT line quotes the statement, and a role's carries
	// its password hash: psql is told not to show it. Then, where psql
	// can, it is told to run no meta-command at all (\restrict, with a key
	// the script cannot know): psqlMetaCommand's check before it is a
	// lexer's guess at psql's, and a globals object changed in storage
	// could make \! run a shell command on this host.
	head := "\\set SHOW_CONTEXT never\n"
	var notes []string
	if restrictable(psql.Version) {
		key, err := restrictKey()
		if err != nil {
			return nil, err
		}
		head += "\\restrict " + key + "\n"
	} else {
		notes = append(notes, fmt.Sprintf("psql %s cannot refuse meta-commands (\\restrict came in 13.22, 14.19, 15.14, 16.10 and 17.6): pgbackups' own check of the globals for them is all that stood in their way", psql.Version))
	}
	cmd.Stdin = io.MultiReader(strings.NewReader(head), bytes.NewReader(script))
	cmd.Stdout = io.Discard
	if err := forkthread.Run(cmd); err != nil {
		return nil, childError("psql (globals)", err, stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			// "psql:<stdin>:12: ERROR:  ..." reads better without the location.
			if i := strings.Index(line, ": "); strings.HasPrefix(line, "psql:") && i > 0 {
				line = strings.TrimSpace(line[i+2:])
			}
			notes = append(notes, redactPassword(line))
		}
	}
	return notes, nil
}

// redactPassword hides the value after PASSWORD in a message that quotes a
// role's statement anyway.
func redactPassword(line string) string {
	i := strings.Index(line, "PASSWORD '")
	if i < 0 {
		return line
	}
	rest := line[i+len("PASSWORD '"):]
	end := strings.IndexByte(rest, '\'')
	if end < 0 {
		return line[:i] + "PASSWORD [redacted]"
	}
	return line[:i] + "PASSWORD [redacted]" + rest[end+1:]
}

// noRolePasswords begins the manifest warning of globals stored without
// role passwords; restore --with-globals looks for it.
const noRolePasswords = "globals were stored without role passwords"
