package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/dump"
)

var restoreCommand = command{
	name:    "restore",
	args:    "[ID|latest] --to DATABASE_URL --confirm DBNAME [--clean] [--no-owner] [--no-acl] [--no-tablespaces] [--jobs N] [--with-globals] [--database-properties]",
	summary: "restore a backup into a database, streaming it into pg_restore",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		to := fs.String("to", "", "the database to restore into: a `DATABASE_URL` or key=value DSN naming a database that exists. Its password may come from PGPASSWORD or ~/.pgpass instead, which keeps it out of the process list")
		confirm := fs.String("confirm", "", "the target database's name (`DBNAME`), repeated: restore replaces what it holds")
		clean := fs.Bool("clean", false, "drop the backup's objects in the target before recreating them (pg_restore --clean --if-exists); the backup is read through and checked first")
		noOwner := fs.Bool("no-owner", false, "do not restore ownership: everything belongs to the restoring role (needed when the backup's roles do not exist there)")
		noACL := fs.Bool("no-acl", false, "do not restore privileges (GRANT/REVOKE)")
		noTablespaces := fs.Bool("no-tablespaces", false, "do not restore tablespace assignments: everything goes into the target's default tablespace (needed when the backup's tablespaces do not exist there); with --with-globals they are not created either")
		jobs := fs.Int("jobs", 1, "restore with `N` parallel jobs; needs the archive as a file, decompressed to a temporary file first")
		withGlobals := fs.Bool("with-globals", false, "first create the backup's roles and tablespaces in the target cluster (an existing role keeps its password and attributes; the backup's settings, memberships and comments are applied to it)")
		dbProps := fs.Bool("database-properties", false, "after the restore, also apply the backup's properties of the database itself, renamed to the target: its owner (unless --no-owner), ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET settings, grants on it (unless --no-acl) and comment, which pg_restore applies only when it creates the database")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		if *jobs < 1 {
			return usagef("--jobs %d: want 1 or more", *jobs)
		}
		target, err := m.target("--to", *to)
		if err != nil {
			return err
		}
		if err := checkConfirm(*confirm, target); err != nil {
			return err
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		man, err := m.resolve(ctx, pos)
		if err != nil {
			return err
		}
		if m.isSource(target) {
			fmt.Fprintf(m.Stderr, "restoring over %s, the database pgbackups backs up (PGBACKUPS_DATABASE_URL), as --confirm %s asks\n", target, *confirm)
			// Under the backup lock, as capture and prune: a scheduled
			// backup would otherwise take the half-restored database, and
			// its retention could remove the day's good backup for it, or
			// the very backup this restore reads.
			release, err := m.pruneLock(ctx)
			var held *daemon.HeldError
			switch {
			case errors.As(err, &held):
				return fmt.Errorf("a backup or prune is running (%w); nothing was restored: restore again when it has finished, or stop the daemon first", err)
			case err != nil:
				fmt.Fprintf(m.Stderr, "restore: cannot take the backup lock (%v); a scheduled backup may run during the restore\n", err)
			default:
				defer release()
				fmt.Fprintf(m.Stderr, "holding the backup lock until the restore ends: no scheduled backup or retention of this database runs meanwhile\n")
			}
		}
		fmt.Fprintf(m.Stderr, "restoring backup %s (%s, taken %s, %s) into %s\n",
			man.ID, man.Database, man.StartedAt.Local().Format("2006-01-02 15:04 MST"), config.HumanBytes(man.DumpBytes), target)
		if *jobs > 1 {
			fmt.Fprintf(m.Stderr, "--jobs %d needs a seekable archive: decompressing it to a temporary file in %s first (%s of disk); it is removed afterwards\n",
				*jobs, os.TempDir(), config.HumanBytes(man.DumpBytes))
		}
		ids, err := m.identities(man)
		if err != nil {
			return err
		}
		res, err := dump.Restore(ctx, dump.RestoreOptions{
			Store: m.store, Manifest: man, Target: target, PgBinDir: m.cfg.PgBinDir,
			Clean: *clean, NoOwner: *noOwner, NoACL: *noACL, NoTablespaces: *noTablespaces, WithGlobals: *withGlobals, Jobs: *jobs,
			DatabaseProperties: *dbProps, Identities: ids, Logger: m.log.With("component", "restore"),
		})
		for _, note := range res.GlobalsNotes {
			fmt.Fprintf(m.Stderr, "globals: %s\n", note)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stderr, "restored %d tables (%d rows) into database %q in %s\n", res.Tables, res.Rows, res.Database, res.Duration.Round(time.Millisecond))
		// pg_restore into an existing database leaves the database's own
		// properties out (they come with --create only).
		if *dbProps {
			fmt.Fprintf(m.Stderr, "applied %s of the database itself (owner, settings, grants, comment)\n", plural(res.DatabaseApplied, "property statement"))
			for _, n := range res.DatabaseNotes {
				fmt.Fprintf(m.Stderr, "not applied: %s\n", n)
			}
		} else {
			fmt.Fprintln(m.Stderr, "not restored: the database's own owner, settings (ALTER DATABASE ... SET), grants on it and comment; add --database-properties to apply them")
		}
		fmt.Fprintln(m.Stderr, "planner statistics are not part of a dump: run ANALYZE (or vacuumdb --analyze-only) on it")
		m.log.Info("restore completed", "component", "restore", "backup", man.ID, "target_database", res.Database, "tables", res.Tables, "rows", res.Rows, "duration_seconds", res.Duration.Round(time.Millisecond).Seconds())
		return nil
	},
}

// target parses a database URL given on the command line. The error never
// repeats it: it may hold a password.
func (m *Main) target(flagName, raw string) (dump.Conn, error) {
	if raw == "" {
		return dump.Conn{}, usagef("%s DATABASE_URL is required", flagName)
	}
	c, err := dump.ParseConn(raw)
	if err != nil {
		return dump.Conn{}, usagef("%s: %v", flagName, err)
	}
	if c.Database() == "" {
		return dump.Conn{}, usagef("%s names no database", flagName)
	}
	return c, nil
}

// checkConfirm insists that --confirm repeats the target database's name.
func checkConfirm(confirm string, target dump.Conn) error {
	switch confirm {
	case "":
		return usagef("restore replaces what database %q holds: repeat its name with --confirm %s", target.Database(), target.Database())
	case target.Database():
		return nil
	}
	return usagef("--confirm %q does not match the target database %q; nothing was restored", confirm, target.Database())
}

// isSource reports whether c is the database pgbackups backs up: the one
// PGBACKUPS_DATABASE_URL names or, when it is unset, libpq's PG* variables.
func (m *Main) isSource(c dump.Conn) bool {
	src, err := dump.ParseConn(m.cfg.DatabaseURL)
	if err != nil {
		return false
	}
	return sameDatabase(src.Config(), c.Config())
}

// sameDatabase reports whether a and b reach the same database: the same
// name on a server both reach, by any of their hosts (a multi-host URL
// lists several). Host names are compared as written, except that every
// way of reaching this machine's server is one: localhost, loopback
// addresses and Unix-domain sockets, told apart only by port.
func sameDatabase(a, b *pgx.ConnConfig) bool {
	if dbName(a) != dbName(b) {
		return false
	}
	for _, x := range endpoints(a) {
		for _, y := range endpoints(b) {
			if x == y {
				return true
			}
		}
	}
	return false
}

// dbName is the database a connects to; libpq's default is the user name.
func dbName(c *pgx.ConnConfig) string {
	if c.Database == "" {
		return c.User
	}
	return c.Database
}

// endpoint is one server address, with local ones folded together.
type endpoint struct {
	host string
	port uint16
}

func endpoints(c *pgx.ConnConfig) []endpoint {
	eps := []endpoint{{localHost(c.Host), c.Port}}
	for _, f := range c.Fallbacks {
		eps = append(eps, endpoint{localHost(f.Host), f.Port})
	}
	return eps
}

// localHost returns "local" for a host that names this machine's server,
// and host, lower-cased, otherwise.
func localHost(host string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.HasPrefix(h, "/") || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "local"
	}
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil && ip.IsLoopback() {
		return "local"
	}
	return h
}

var verifyCommand = command{
	name:    "verify",
	args:    "[ID|latest] [--restore-to DATABASE_URL]",
	summary: "re-read a backup: checksums, pg_restore --list, row counts; optionally restore it into a scratch database",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		restoreTo := fs.String("restore-to", "", "the `DATABASE_URL` of an empty scratch database to restore into (without owners, grants or tablespaces; roles named in row-level security policies must exist there) and count rows in")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		var scratch *dump.Conn
		if *restoreTo == "" && flagSet(fs, "restore-to") {
			// An unset variable (--restore-to "$SCRATCH_URL") must not
			// quietly skip the restore the caller asked for.
			return usagef("--restore-to is empty: give the DATABASE_URL of an empty scratch database, or leave the flag out to skip the restore")
		}
		if *restoreTo != "" {
			c, err := m.target("--restore-to", *restoreTo)
			if err != nil {
				return err
			}
			scratch = &c
		}
		if err := m.setup(ctx); err != nil {
			return err
		}
		if scratch != nil && m.isSource(*scratch) {
			return usagef("--restore-to names %s, the database pgbackups backs up: verify needs an empty scratch database", *scratch)
		}
		man, err := m.resolve(ctx, pos)
		if err != nil {
			return err
		}
		ids, err := m.identities(man)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := dump.Verify(ctx, dump.VerifyOptions{
			Store: m.store, Manifest: man, PgBinDir: m.cfg.PgBinDir, RestoreTo: scratch,
			Identities: ids, Logger: m.log.With("component", "verify"),
		})
		m.printCounts(res.Counts, man.TableCountMethod)
		if lo := man.LargeObjects; lo != nil && res.LargeObjects >= 0 && *lo != res.LargeObjects {
			fmt.Fprintf(m.Stdout, "  large objects: recorded %d, found %d\n", *lo, res.LargeObjects)
		}
		if err != nil {
			if errors.Is(err, dump.ErrCountMismatch) {
				return fmt.Errorf("%w (listed above)", err)
			}
			return err
		}
		if man.GlobalsKey != "" {
			fmt.Fprintf(m.Stdout, "backup %s is good: stored, archive and globals sha256 match the manifest\n", man.ID)
		} else {
			fmt.Fprintf(m.Stdout, "backup %s is good: stored and archive sha256 match the manifest\n", man.ID)
		}
		if res.Restored != nil {
			fmt.Fprintf(m.Stdout, "restored into %q: %d tables, %d rows\n", res.Restored.Database, res.Restored.Tables, res.Restored.Rows)
		} else {
			fmt.Fprintf(m.Stdout, "pg_restore --list reads %d entries\n", res.Entries)
		}
		switch {
		case len(man.Tables) == 0:
			fmt.Fprintln(m.Stdout, "no row counts were recorded at capture: none compared")
		case res.Counts == nil:
			fmt.Fprintf(m.Stdout, "row counts (%s) not compared: add --restore-to to count them in a restored copy\n", man.TableCountMethod)
		case man.TableCountMethod == dump.CountMethodEstimate:
			near := 0
			for _, c := range res.Counts {
				if c.OK {
					near++
				}
			}
			fmt.Fprintf(m.Stdout, "row counts of %d of %d tables are near capture's estimates (pg_class.reltuples; estimates are never exact, so this is no failure)\n", near, len(res.Counts))
		default:
			fmt.Fprintf(m.Stdout, "row counts of %d tables match what capture recorded (%s)\n", len(res.Counts), man.TableCountMethod)
		}
		if man.LargeObjects != nil && res.LargeObjects >= 0 {
			fmt.Fprintf(m.Stdout, "%s, as capture recorded\n", plural(int(res.LargeObjects), "large object"))
		}
		fmt.Fprintf(m.Stdout, "verified in %s\n", time.Since(start).Round(time.Millisecond))
		return nil
	},
}

// printCounts lists the tables whose counts disagree, the first
// maxCountLines of them: a database with a schema per tenant has tens of
// thousands of tables, and a scratch database restored wrong would
// otherwise print a line for each.
func (m *Main) printCounts(cs []dump.CountCheck, method string) {
	shown, bad := 0, 0
	for _, c := range cs {
		if c.OK {
			continue
		}
		bad++
		if shown == maxCountLines {
			continue
		}
		shown++
		got := fmt.Sprint(c.Got)
		if c.Got < 0 {
			got = "missing"
		}
		kind := "differs"
		if method == dump.CountMethodEstimate {
			kind = "far from the estimate"
		}
		fmt.Fprintf(m.Stdout, "  %s.%s: recorded %d, found %s (%s)\n", c.Schema, c.Table, c.Recorded, got, kind)
	}
	if bad > shown {
		fmt.Fprintf(m.Stdout, "  ... and %d more tables differ (%d of %d in all); `pgbackups info ID --tables` lists the counts recorded\n", bad-shown, bad, len(cs))
	}
}

// maxCountLines bounds the tables printCounts lists.
const maxCountLines = 20
