// Package dump talks to PostgreSQL: pre-flight queries through pgx, and the
// pg_dump / pg_restore / pg_dumpall subprocesses.
package dump

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/config"
)

// Conn is a database location as the user gave it: a postgres:// URL, a
// keyword/value DSN, or "" for libpq's PG* environment variables. It keeps
// the password away from logs, errors and child argv.
type Conn struct {
	raw string
	cfg *pgx.ConnConfig
}

// ParseConn parses raw the way libpq would (pgx reads the PG* variables and
// passfile too). Errors never repeat raw, which may hold a password.
func ParseConn(raw string) (Conn, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		if raw == "" {
			return Conn{}, config.ConnParseError(err, raw)
		}
		return Conn{}, fmt.Errorf("database URL %w", config.ConnParseError(err, raw))
	}
	if err := config.ConnAtError(raw); err != nil {
		return Conn{}, fmt.Errorf("database URL: %w", err)
	}
	return Conn{raw: raw, cfg: cfg}, nil
}

// scrub removes raw from msg in case a parser quoted it back.
func scrub(msg, raw string) string {
	if raw != "" {
		msg = strings.ReplaceAll(msg, raw, "<redacted>")
	}
	return msg
}

// Config returns a copy of the pgx configuration for connecting.
func (c Conn) Config() *pgx.ConnConfig { return c.cfg.Copy() }

// Database is the database name.
func (c Conn) Database() string { return c.cfg.Database }

// ServerDatabase is the database the server connects to: Database, or,
// when the URL and PGDATABASE name none, the user's name (libpq's
// default). "postgres://app@db" and "postgres://app@db/app" are one
// database, and must share one backup lock.
func (c Conn) ServerDatabase() string {
	if c.cfg.Database != "" {
		return c.cfg.Database
	}
	return c.cfg.User
}

// User is the role name.
func (c Conn) User() string { return c.cfg.User }

// String describes the connection for people: database, host and user,
// never the password.
func (c Conn) String() string {
	if c.cfg == nil {
		return "(no database)"
	}
	host := c.cfg.Host
	if strings.HasPrefix(host, "/") {
		host = filepath.Join(host, fmt.Sprintf(".s.PGSQL.%d", c.cfg.Port))
	} else {
		host = fmt.Sprintf("%s:%d", host, c.cfg.Port)
	}
	return fmt.Sprintf("database %q on %s as %q", c.cfg.Database, host, c.cfg.User)
}

// IsURL reports whether the connection was given in URL form.
func (c Conn) IsURL() bool {
	return strings.HasPrefix(c.raw, "postgres://") || strings.HasPrefix(c.raw, "postgresql://")
}

// childArgs is how a libpq tool reaches this database: --dbname with the
// secrets removed, and an environment that hands them over in 0600 files
// (the password in a passfile, an sslpassword in a service file). cleanup
// removes those files.
type childArgs struct {
	dbname  string   // for --dbname; "" means the PG* variables decide
	env     []string // the child's whole environment
	cleanup func()
}

// childService is the section of the service file that carries an
// sslpassword to a child.
const childService = "pgbackups"

// forChild builds childArgs. dir is where the passfile and service file go.
func (c Conn) forChild(dir string) (out childArgs, err error) {
	env := childEnviron(os.Environ())
	var files []string
	out.cleanup = func() {
		for _, f := range files {
			removeTemp(f)
		}
	}
	defer func() {
		if err != nil {
			out.cleanup()
		}
	}()
	if c.raw == "" {
		// libpq in the child reads the same PG* variables pgx read here.
		out.env = env
		return out, nil
	}
	// sslpassword (the client key's passphrase) has no environment
	// variable; a service file is the one place besides the connection
	// string where libpq reads it.
	sslPassword, hasSSLPassword := connValue(c.raw, "sslpassword")
	if c.IsURL() {
		out.dbname = urlWithout(c.raw, "password", "sslpassword")
	} else {
		out.dbname = dsnWithout(c.raw, "password", "sslpassword")
	}
	var drop, add []string // environment variables
	if c.cfg.Password != "" {
		line := "*:*:*:*:" + pgpassEscape(c.cfg.Password) + "\n"
		name, err := writeSecretFile(dir, line)
		if err != nil {
			return out, fmt.Errorf("passfile for the child in %s (TMPDIR): %w", dir, err)
		}
		files = append(files, name)
		// PGPASSWORD would win over the passfile; the URL's password is the
		// one the user meant for this database.
		drop = append(drop, "PGPASSWORD", "PGPASSFILE")
		add = append(add, "PGPASSFILE="+name)
	}
	if hasSSLPassword {
		_, service := connValue(c.raw, "service")
		_, serviceFile := connValue(c.raw, "servicefile") // libpq 18 and newer
		if service || serviceFile || os.Getenv("PGSERVICE") != "" {
			return out, errors.New("sslpassword cannot be combined with a connection service (service=, servicefile= or PGSERVICE): put sslpassword in that service's entry instead")
		}
		if strings.ContainsAny(sslPassword, "\r\n") || strings.TrimRight(sslPassword, connSpace) != sslPassword {
			return out, errors.New("sslpassword contains a line break or ends in white space, which a libpq service file cannot carry")
		}
		name, err := writeSecretFile(dir, "["+childService+"]\nsslpassword="+sslPassword+"\n")
		if err != nil {
			return out, fmt.Errorf("service file: %w", err)
		}
		files = append(files, name)
		drop = append(drop, "PGSERVICEFILE", "PGSERVICE")
		add = append(add, "PGSERVICEFILE="+name, "PGSERVICE="+childService)
	}
	env = slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(drop, name)
	})
	out.env = append(env, add...)
	return out, nil
}

// writeSecretFile writes content to a new 0600 file in dir (CreateTemp's
// mode, which libpq insists on for a passfile) and returns its name.
func writeSecretFile(dir, content string) (string, error) {
	f, err := createPassfile(dir)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		removeTemp(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		removeTemp(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// childEnviron is the environment a libpq child inherits: ours without the
// variables that hold pgbackups' own secrets (database URLs, S3 keys), which
// a child has no use for and would expose in /proc/PID/environ.
//
// The children's messages are kept in English (LC_MESSAGES=C; LANGUAGE,
// which overrides it for gettext, and LC_ALL, which overrides every
// category, are dropped, LC_ALL's value kept for the character type):
// pgbackups reads their stderr for what went wrong (a lock wait timed out,
// a lost connection, a warning that something was left out), and Debian's
// client packages ship translations.
func childEnviron(env []string) []string {
	kept := make([]string, 0, len(env)+2)
	var all string
	ctype := false
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "PGBACKUPS_") || strings.HasPrefix(name, "AWS_") || name == "DATABASE_URL":
			continue
		case name == "LANGUAGE" || name == "LC_MESSAGES":
			continue
		case name == "LC_ALL":
			all = value
			continue
		case name == "LC_CTYPE":
			ctype = true
		}
		kept = append(kept, kv)
	}
	if all != "" && !ctype {
		kept = append(kept, "LC_CTYPE="+all)
	}
	return append(kept, "LC_MESSAGES=C")
}

// toolEnviron is the environment of a child that never connects (pg_dump
// --version, pg_restore --list): childEnviron without libpq's variables,
// PGPASSWORD above all, which it has no use for either.
func toolEnviron(env []string) []string {
	return slices.DeleteFunc(childEnviron(env), func(kv string) bool {
		return strings.HasPrefix(kv, "PG")
	})
}

// pgpassEscape escapes ':' and '\' as the passfile format requires.
func pgpassEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
}

// urlWithout removes secrets from a postgres:// URL: the userinfo's
// password when drop has "password", and every query parameter named in
// drop. It cuts the text where libpq's URI parser finds those parts (pgx's
// mirrors it) and leaves the rest as written. net/url would not do: it ends
// userinfo at the last '@' where libpq ends it at the first, and
// re-encoding the query can turn a password libpq reads from the userinfo
// into a query value that reaches argv.
func urlWithout(raw string, drop ...string) string {
	u := splitURL(raw)
	if slices.Contains(drop, "password") {
		u.userinfo, _, _ = strings.Cut(u.userinfo, ":")
	}
	head := u.scheme
	if u.userinfo != "" {
		head += u.userinfo + "@"
	}
	if !u.hasQuery {
		return head + u.base
	}
	var kept []string
	for _, pair := range strings.Split(u.query, "&") {
		key, _, _ := strings.Cut(pair, "=")
		// libpq percent-decodes keys: pass%77ord is password. A key that does
		// not decode is dropped too (pgx would not have parsed it anyway).
		if k, err := uriDecode(key); err != nil || slices.Contains(drop, k) {
			continue
		}
		kept = append(kept, pair)
	}
	if len(kept) == 0 {
		return head + u.base
	}
	return head + u.base + "?" + strings.Join(kept, "&")
}

// urlParts is a postgres:// URL cut where libpq's URI parser cuts it, each
// part as written.
type urlParts struct {
	scheme   string // "postgresql://" or "postgres://"; "" when raw is not a URL
	userinfo string // before the '@', which is not included
	base     string // hosts, ports and database
	query    string // after the '?', which is not included
	hasQuery bool
}

// splitURL cuts raw into urlParts. libpq: userinfo is whatever precedes the
// first '@' that comes before any '/', even past a '?', so a '?' in a
// password does not start the query.
func splitURL(raw string) urlParts {
	var u urlParts
	rest := raw
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if r, ok := strings.CutPrefix(raw, scheme); ok {
			u.scheme, rest = scheme, r
			break
		}
	}
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		u.userinfo, rest = rest[:i], rest[i+1:]
	}
	u.base, u.query, u.hasQuery = strings.Cut(rest, "?")
	return u
}

// uriDecode decodes a URL query key or value as pgx does (pgconn's
// uriDecode): spaces around it are dropped, one inside it is an error, and
// then it is percent-decoded. Otherwise "?password =secret", which pgx
// reads as the password, would not be taken out of a child's argv.
func uriDecode(s string) (string, error) {
	s = strings.Trim(s, " ")
	if strings.Contains(s, " ") {
		return "", errors.New("a space inside a URI component")
	}
	return url.PathUnescape(s)
}

// connValue is the value of keyword key in a connection string, URL query
// parameter or keyword/value pair, decoded as libpq decodes it; the last
// one wins, as in libpq. (The URL userinfo's password is not looked at:
// pgx has parsed it already.)
func connValue(raw, key string) (string, bool) {
	var val string
	found := false
	if u := splitURL(raw); u.scheme != "" {
		if u.query == "" {
			return "", false
		}
		for _, pair := range strings.Split(u.query, "&") {
			k, v, _ := strings.Cut(pair, "=")
			k, kerr := uriDecode(k)
			v, verr := uriDecode(v)
			if kerr == nil && verr == nil && k == key {
				val, found = v, true
			}
		}
		return val, found
	}
	for _, kv := range dsnPairs(raw) {
		if kv.key == key && !kv.bare {
			val, found = dsnUnquote(kv.val), true
		}
	}
	return val, found
}

// connSpace is what libpq's conninfo parser takes for white space (isspace).
const connSpace = " \t\n\r\v\f"

// dsnWithout removes keywords from a libpq keyword/value string.
func dsnWithout(dsn string, drop ...string) string {
	var kept []string
	for _, kv := range dsnPairs(dsn) {
		switch {
		case kv.bare:
			kept = append(kept, kv.key) // kept as written for libpq to reject
		case !slices.Contains(drop, kv.key):
			kept = append(kept, kv.key+"="+kv.val)
		}
	}
	return strings.Join(kept, " ")
}

// dsnPairs splits a libpq keyword/value string into keyword and raw value
// (quotes and escapes as written). Values are cut where libpq cuts them: a
// backslash escapes the next character both in single-quoted values and in
// bare ones (password=ab\ cd is "ab cd").
func dsnPairs(dsn string) []dsnPair {
	var out []dsnPair
	s := dsn
	for {
		s = strings.TrimLeft(s, connSpace)
		if s == "" {
			return out
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return append(out, dsnPair{key: s, bare: true})
		}
		key := strings.Trim(s[:eq], connSpace)
		rest := strings.TrimLeft(s[eq+1:], connSpace)
		quoted := strings.HasPrefix(rest, "'")
		i := 0
		if quoted {
			i = 1
		}
		for i < len(rest) {
			c := rest[i]
			if quoted && c == '\'' {
				i++ // the closing quote
				break
			}
			if !quoted && strings.IndexByte(connSpace, c) >= 0 {
				break
			}
			if c == '\\' {
				i++
			}
			i++
		}
		end := min(i, len(rest))
		out = append(out, dsnPair{key: key, val: rest[:end]})
		s = rest[end:]
	}
}

// dsnPair is one keyword and its value as written (quotes and escapes
// included). bare marks trailing text without '=', which libpq rejects.
type dsnPair struct {
	key, val string
	bare     bool
}

// dsnUnquote decodes a raw keyword/value value: outer single quotes off,
// backslash escapes resolved.
func dsnUnquote(v string) string {
	if strings.HasPrefix(v, "'") {
		v = strings.TrimSuffix(v[1:], "'")
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
