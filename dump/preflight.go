package dump

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ServerInfo is what pre-flight learns about the database before dumping.
type ServerInfo struct {
	Database   string
	Version    string // server_version, e.g. "15.18 (Debian 15.18-0+deb12u1)"
	VersionNum int    // server_version_num, e.g. 150018
	SizeBytes  int64  // pg_database_size
	InRecovery bool   // a standby
	// SystemID is the cluster's system identifier (pg_control_system),
	// shared by its physical replicas and kept across failover; empty
	// where the server does not say (before 9.6, or not permitted).
	SystemID string
	// Started is when the server last started (pg_postmaster_start_time):
	// a later reading means it restarted since.
	Started time.Time
	// DatabaseOID is the database's pg_database oid: a database dropped
	// and re-created under the same name gets another.
	DatabaseOID uint32
	// Tables counts the database's own tables: not the catalogs', nor an
	// extension's (PostGIS's spatial_ref_sys, pg_cron's cron.job).
	Tables int64
	// Clock is the server's clock (clock_timestamp()) when this host's
	// read Asked, halfway through the query that read it; RTT is that
	// query's round trip, the reading's uncertainty.
	Clock, Asked time.Time
	RTT          time.Duration
}

// Major is the server's major version (15 for 150018, 9 for 90624: dumping
// 9.x is left to pg_dump's own support matrix).
func (s ServerInfo) Major() int { return s.VersionNum / 10000 }

// Connect opens one pgx connection with a bounded connect timeout. Its error
// names the database, host and user, never the password.
func Connect(ctx context.Context, c Conn) (*pgx.Conn, error) {
	cfg := c.Config()
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 15*time.Second {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgbackups"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c, redacted(err, c))
	}
	return conn, nil
}

// Redact renders err without the connection's password, and without the
// noisy connection prefix pgconn repeats (the caller names the database).
func Redact(err error, c Conn) string { return redacted(err, c).Error() }

// RedactedError is a connection or server error with the password taken
// out of its text. It does not wrap the original, whose text may hold the
// password, but keeps the server's SQLSTATE, so callers can tell errors
// apart with errors.As instead of by their text.
type RedactedError struct {
	Msg  string
	Code string // the server's SQLSTATE; "" when the server sent no error
}

func (e *RedactedError) Error() string { return e.Msg }

// sqlstateInvalidCatalogName is the server's "database does not exist".
const sqlstateInvalidCatalogName = "3D000"

func redacted(err error, c Conn) *RedactedError {
	msg := err.Error()
	var code string
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg, code = pgErr.Message, pgErr.Code
		if code != "" {
			msg += " (SQLSTATE " + code + ")"
		}
	}
	if c.cfg != nil && c.cfg.Password != "" {
		msg = strings.ReplaceAll(msg, c.cfg.Password, "<redacted>")
	}
	return &RedactedError{Msg: scrub(msg, c.raw), Code: code}
}

// Preflight connects, reads the server version and database size, and
// fails clearly when the database cannot be reached.
func Preflight(ctx context.Context, c Conn) (ServerInfo, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	failed := func(err error) (ServerInfo, error) {
		if ctx.Err() != nil && parent.Err() == nil {
			return ServerInfo{}, fmt.Errorf("pre-flight on %s: no answer within %s: the server, or the network to it, stopped responding", c, preflightTimeout)
		}
		return ServerInfo{}, fmt.Errorf("pre-flight on %s: %w", c, redacted(err, c))
	}
	conn, err := Connect(ctx, c)
	if err != nil {
		return ServerInfo{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var s ServerInfo
	sent := time.Now()
	err = conn.QueryRow(ctx, `SELECT clock_timestamp(), current_database(),
		current_setting('server_version'),
		current_setting('server_version_num')::int,
		pg_database_size(current_database()),
		pg_is_in_recovery(), pg_postmaster_start_time(),
		(SELECT oid FROM pg_database WHERE datname = current_database()),
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
		   AND n.nspname NOT LIKE 'pg\_%'
		   AND NOT EXISTS (SELECT 1 FROM pg_depend d
		     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))`).Scan(&s.Clock, &s.Database, &s.Version, &s.VersionNum, &s.SizeBytes, &s.InRecovery, &s.Started, &s.DatabaseOID, &s.Tables)
	if err != nil {
		return failed(err)
	}
	s.RTT = time.Since(sent)
	s.Asked = sent.Add(s.RTT / 2)
	// Best effort: it tells two clusters' same-named databases apart.
	if s.VersionNum >= 90600 {
		var id int64
		if err := conn.QueryRow(ctx, `SELECT system_identifier FROM pg_control_system()`).Scan(&id); err == nil {
			s.SystemID = strconv.FormatInt(id, 10)
		} else if ctx.Err() != nil {
			return failed(err)
		}
	}
	return s, nil
}

// preflightTimeout bounds pre-flight as a whole. Connecting has its own
// bound (Connect); this one is for a server, or a network path, that goes
// silent once connected, which would otherwise hold the run until TCP
// keepalives give up, most of an hour later. pg_database_size of a
// database with very many files takes seconds, not minutes.
var preflightTimeout = 2 * time.Minute

// clockSkewLimit is how far the clock that stamps a backup (its id and
// times) may be from the database server's before capture warns. Servers
// keep NTP time; a host a minute off already misorders backups taken
// minutes apart by replicas, and at 10 minutes ahead other hosts list its
// backups as misdated (storage.Manifest.CheckStart).
const clockSkewLimit = time.Minute

// ClockSkew is how far ahead of the server's clock (behind, if negative)
// the clock stamp read, at stamped, was when pre-flight read the server's:
// zero within clockSkewLimit and the reading's uncertainty. stamped is
// read from stamp's clock, not time.Now, which may be another (tests).
func (s ServerInfo) ClockSkew(stamped time.Time) time.Duration {
	if s.Clock.IsZero() || s.Asked.IsZero() {
		return 0
	}
	// The stamping clock at the moment the server's was read: the time
	// elapsed since, on the monotonic clock, taken back off stamped.
	skew := stamped.Add(-time.Since(s.Asked)).Sub(s.Clock)
	if skew.Abs() <= clockSkewLimit+s.RTT/2 {
		return 0
	}
	return skew
}
