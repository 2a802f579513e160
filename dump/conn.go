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
		return Conn{}, fmt.Errorf("database URL does not parse (not shown: it may hold a password): %s", scrub(err.Error(), raw))
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
		u, err := url.Parse(c.raw)
		if err != nil {
			return out, fmt.Errorf("database URL does not parse")
		}
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		q.Del("password")
		u.RawQuery = q.Encode()
		out.dbname = u.String()
	default:
		out.dbname = dsnWithout(c.raw, "password")
	}
	out.env = env
	if c.cfg.Password == "" {
		return out, nil
	}
	f, err := os.CreateTemp(dir, "pgbackups-pgpass-*")
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

// dsnWithout removes one keyword from a libpq keyword/value string, honouring
// single-quoted values with backslash escapes.
func dsnWithout(dsn, drop string) string {
	var kept []string
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			kept = append(kept, s)
			break
		}
		key := strings.TrimSpace(s[:eq])
		rest := strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, "'") {
			i := 1
			for i < len(rest) && rest[i] != '\'' {
				if rest[i] == '\\' {
					i++
				}
				i++
			}
			end := min(i+1, len(rest))
			val, s = rest[:end], rest[end:]
		} else {
			end := strings.IndexAny(rest, " \t\n\r")
			if end < 0 {
				end = len(rest)
			}
			val, s = rest[:end], rest[end:]
		}
		if key != drop {
			kept = append(kept, key+"="+val)
		}
	}
	return strings.Join(kept, " ")
}
