package dump

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// checkStandby verifies that dc (PGBACKUPS_DUMP_URL) can stand in for the
// primary pre-flight reached: a server in recovery, of the primary's major
// version (pg_dump was chosen for the primary's), serving the same
// database, and a copy of the same cluster (same system identifier, checked
// where the role may read pg_control_system()). A logical replica or a
// different server would give a backup of something else under the
// primary's name. It logs how far the standby's replay trails the primary:
// the backup shows the data as of the standby's replay position.
func checkStandby(ctx context.Context, primary Conn, pinfo ServerInfo, dc Conn, pgDump Tool, log *slog.Logger) (*standbySource, error) {
	sc, err := Connect(ctx, dc)
	if err != nil {
		return nil, fmt.Errorf("standby: %w", err)
	}
	defer sc.Close(context.WithoutCancel(ctx))
	var s ServerInfo
	err = sc.QueryRow(ctx, `SELECT current_database(), current_setting('server_version'),
		current_setting('server_version_num')::int, pg_is_in_recovery(), pg_postmaster_start_time()`).Scan(&s.Database, &s.Version, &s.VersionNum, &s.InRecovery, &s.Started)
	if err != nil {
		return nil, fmt.Errorf("standby: pre-flight on %s: %s", dc, Redact(err, dc))
	}
	switch {
	case !s.InRecovery:
		return nil, fmt.Errorf("standby: %s is not in recovery, so not a standby: dumping it would back up another server under the primary's name; point PGBACKUPS_DUMP_URL at a streaming replica of PGBACKUPS_DATABASE_URL, or unset it", dc)
	case s.Major() != pinfo.Major():
		return nil, fmt.Errorf("standby: %s runs PostgreSQL %s and the primary %s; a streaming replica runs the primary's major version, so this is another server", dc, s.Version, pinfo.Version)
	case s.Major() > pgDump.Major:
		return nil, fmt.Errorf("standby: %s runs PostgreSQL %s, newer than pg_dump %s", dc, s.Version, pgDump.Version)
	case s.Database != pinfo.Database:
		return nil, fmt.Errorf("standby: PGBACKUPS_DUMP_URL names database %q and PGBACKUPS_DATABASE_URL %q; they must be the same database", s.Database, pinfo.Database)
	}

	// Same cluster and replay lag, best effort: pg_control_system() may be
	// denied to the role, and the check is a safety net, not a requirement.
	pc, err := Connect(ctx, primary)
	if err != nil {
		return nil, err
	}
	defer pc.Close(context.WithoutCancel(ctx))
	var lsn *string
	if err := pc.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`).Scan(&lsn); err != nil {
		return nil, fmt.Errorf("pre-flight on %s: %s", primary, Redact(err, primary))
	}
	var lagBytes int64
	var lagAge *float64
	if err := sc.QueryRow(ctx, `SELECT COALESCE(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint,
		extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8`, lsn).Scan(&lagBytes, &lagAge); err != nil {
		return nil, fmt.Errorf("standby: pre-flight on %s: %s", dc, Redact(err, dc))
	}
	var pid, sid string
	perr := pc.QueryRow(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&pid)
	serr := sc.QueryRow(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&sid)
	switch {
	case perr != nil || serr != nil:
		log.Debug("standby: cannot compare system identifiers", "primary_err", errString(perr, primary), "standby_err", errString(serr, dc))
	case pid != sid:
		return nil, fmt.Errorf("standby: %s is a copy of another cluster (system identifier %s, the primary's is %s)", dc, sid, pid)
	}
	attrs := []any{"standby", dc.String(), "replay_lag_bytes", max(lagBytes, 0)}
	if lagAge != nil {
		attrs = append(attrs, "last_replayed_commit_age", fmt.Sprintf("%.1fs", *lagAge))
	}
	src := &standbySource{conn: dc, log: log, info: s}
	if src.conflicts, err = conflictCount(ctx, sc); err != nil {
		return nil, fmt.Errorf("standby: pre-flight on %s: %s", dc, Redact(err, dc))
	}
	log.Info("dumping from a standby", attrs...)
	return src, nil
}

func errString(err error, c Conn) string {
	if err == nil {
		return ""
	}
	return Redact(err, c)
}

// standbySource is a checked PGBACKUPS_DUMP_URL.
type standbySource struct {
	conn      Conn
	log       *slog.Logger
	info      ServerInfo // the standby's version (a minor upgrade may reach it first)
	conflicts int64      // pg_stat_database_conflicts total when the dump started
}

// conflictCount is how many queries the standby has cancelled, or sessions
// it has terminated, in the current database to replay WAL.
func conflictCount(ctx context.Context, c *pgx.Conn) (int64, error) {
	var n int64
	err := c.QueryRow(ctx, `SELECT confl_tablespace + confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock
		FROM pg_stat_database_conflicts WHERE datname = current_database()`).Scan(&n)
	return n, err
}

// explain adds the recovery-conflict advice to a failed dump when pg_dump's
// stderr did not name the conflict but the standby counted one while the
// dump ran. That is the usual case: a dump between two tables is idle in
// its transaction, the standby terminates such sessions rather than
// cancelling a query, and pg_dump only learns that the connection is gone
// when it sends its next COPY ("server closed the connection
// unexpectedly"), possibly long after, having read what the server had
// already put in the socket buffers.
func (s *standbySource) explain(ctx context.Context, err error) error {
	if strings.Contains(err.Error(), "conflict with recovery") || ctx.Err() != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, cerr := Connect(ctx, s.conn)
	if cerr != nil {
		s.log.Debug("standby: cannot look for recovery conflicts", "err", cerr)
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	// A cancelled backend reports its conflict with its other statistics,
	// which can lag a second; a terminated one reports it as it exits.
	for i := range 3 {
		if i > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(500 * time.Millisecond):
			}
		}
		n, qerr := conflictCount(ctx, c)
		if qerr != nil {
			s.log.Debug("standby: cannot look for recovery conflicts", "err", Redact(qerr, s.conn))
			return err
		}
		if n > s.conflicts {
			return fmt.Errorf("%w (the standby counted %d recovery conflict(s) in this database while the dump ran, so it most likely ended the dump's session to replay changes from the primary; %s)", err, n-s.conflicts, conflictAdvice)
		}
	}
	return err
}

// conflictAdvice is what to change when a standby cancels dumps.
const conflictAdvice = "on the standby, raise max_standby_streaming_delay (and max_standby_archive_delay) above the dump's duration, or -1 to wait for it, " +
	"which lets replay fall behind while dumps run; and set hot_standby_feedback = on so the primary's vacuum keeps the rows the dump still reads, " +
	"which holds back vacuum on the primary instead. DDL on the primary during the dump conflicts regardless of hot_standby_feedback"

// recoveryConflict adds advice to a pg_dump failure on a standby that
// cancelled it: replaying the primary's changes (a VACUUM removing rows the
// dump's snapshot still sees, or DDL needing a lock the dump holds)
// conflicted with the dump, and the standby waited max_standby_*_delay
// before cancelling the query or terminating the session.
func recoveryConflict(err error, stderr string) error {
	if !strings.Contains(stderr, "conflict with recovery") {
		return err
	}
	return fmt.Errorf("%w (the standby cancelled the dump to replay changes from the primary that conflict with it; %s)", err, conflictAdvice)
}
