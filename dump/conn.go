// Package dump talks to PostgreSQL: pre-flight queries through pgx, and the
// pg_dump / pg_restore / pg_dumpall subprocesses.
package dump

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
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
		return Conn{}, fmt.Errorf("database URL %w", config.ConnParseError(err, raw))
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
// password removed, and an environment that hands the password over in a
// 0600 passfile. cleanup removes the passfile.
type childArgs struct {
	dbname  string   // for --dbname; "" means the PG* variables decide
	env     []string // the child's whole environment
	cleanup func()
}

// forChild builds childArgs. dir is where the passfile goes.
func (c Conn) forChild(dir string) (childArgs, error) {
	env := childEnviron(os.Environ())
	out := childArgs{cleanup: func() {}}
	switch {
	case c.raw == "":
		// libpq in the child reads the same PG* variables pgx read here.
		out.env = env
		return out, nil
	case c.IsURL():
		out.dbname = urlWithoutPassword(c.raw)
	default:
		out.dbname = dsnWithout(c.raw, "password")
	}
	out.env = env
	if c.cfg.Password == "" {
		return out, nil
	}
	f, err := createPassfile(dir)
	if err != nil {
		return out, fmt.Errorf("passfile: %w", err)
	}
	// CreateTemp makes the file 0600, which libpq insists on.
	line := "*:*:*:*:" + pgpassEscape(c.cfg.Password) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		os.Remove(f.Name())
		return out, fmt.Errorf("passfile: %w", err)
	}
	f.Close()
	out.cleanup = func() { os.Remove(f.Name()) }
	// PGPASSWORD would win over the passfile; the URL's password is the one
	// the user meant for this database.
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PGPASSWORD=") && !strings.HasPrefix(kv, "PGPASSFILE=") {
			kept = append(kept, kv)
		}
	}
	out.env = append(kept, "PGPASSFILE="+f.Name())
	return out, nil
}

// childEnviron is the environment a libpq child inherits: ours without the
// variables that hold pgbackups' own secrets (database URLs, S3 keys), which
// a child has no use for and would expose in /proc/PID/environ.
func childEnviron(env []string) []string {
	kept := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PGBACKUPS_") || strings.HasPrefix(name, "AWS_") || name == "DATABASE_URL" {
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

// pgpassEscape escapes ':' and '\' as the passfile format requires.
func pgpassEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
}

// urlWithoutPassword removes the password from a postgres:// URL: the
// userinfo's and every password= query parameter. It cuts the text where
// libpq's URI parser finds those parts (pgx's mirrors it) and leaves the
// rest as written. net/url would not do: it ends userinfo at the last '@'
// where libpq ends it at the first, and re-encoding the query can turn a
// password libpq reads from the userinfo into a query value that reaches
// argv.
func urlWithoutPassword(raw string) string {
	scheme := "postgresql://"
	rest, ok := strings.CutPrefix(raw, scheme)
	if !ok {
		scheme = "postgres://"
		rest = strings.TrimPrefix(raw, scheme)
	}
	// libpq: userinfo is whatever precedes the first '@' that comes before
	// any '/', even past a '?'.
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		user, _, _ := strings.Cut(rest[:i], ":")
		rest = rest[i+1:]
		if user != "" {
			rest = user + "@" + rest
		}
	}
	base, query, ok := strings.Cut(rest, "?")
	if !ok {
		return scheme + base
	}
	var kept []string
	for _, pair := range strings.Split(query, "&") {
		key, _, _ := strings.Cut(pair, "=")
		// libpq percent-decodes keys: pass%77ord is password. A key that does
		// not decode is dropped too (pgx would not have parsed it anyway).
		if k, err := url.PathUnescape(key); err != nil || k == "password" {
			continue
		}
		kept = append(kept, pair)
	}
	if len(kept) == 0 {
		return scheme + base
	}
	return scheme + base + "?" + strings.Join(kept, "&")
}

// connSpace is what libpq's conninfo parser takes for white space (isspace).
const connSpace = " \t\n\r\v\f"

// dsnWithout removes one keyword from a libpq keyword/value string. Values
// are cut where libpq cuts them: a backslash escapes the next character both
// in single-quoted values and in bare ones (password=ab\ cd is "ab cd").
func dsnWithout(dsn, drop string) string {
	var kept []string
	s := dsn
	for {
		s = strings.TrimLeft(s, connSpace)
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			kept = append(kept, s)
			break
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
		val := rest[:end]
		s = rest[end:]
		if key != drop {
			kept = append(kept, key+"="+val)
		}
	}
	return strings.Join(kept, " ")
}
