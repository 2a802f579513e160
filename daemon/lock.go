package daemon

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/pgbackups/pgbackups/dump"
)

// Locker lets one pgbackups at a time back up a database, across every
// process that shares the lock.
type Locker interface {
	// TryLock takes the lock without waiting and holds it until release is
	// called. When another holder has it, the error is a *HeldError.
	TryLock(ctx context.Context) (release func(), err error)
}

// HeldError says the lock is held by someone else: the backup is skipped,
// not failed.
type HeldError struct {
	PID         int       // the holder's server backend pid; 0 when unknown
	Application string    // its application_name
	Client      string    // its client address
	Since       time.Time // when its session started
}

func (e *HeldError) Error() string {
	var who []string
	if e.PID != 0 {
		who = append(who, fmt.Sprintf("pid %d", e.PID))
	}
	if e.Application != "" {
		who = append(who, "application "+e.Application)
	}
	if e.Client != "" {
		who = append(who, "client "+e.Client)
	}
	if !e.Since.IsZero() {
		who = append(who, "connected "+e.Since.UTC().Format(time.RFC3339))
	}
	msg := "another pgbackups holds the lock"
	if len(who) > 0 {
		msg += " (" + strings.Join(who, ", ") + " in pg_locks)"
	}
	return msg
}

// LockKey derives the advisory lock key from where backups are stored and
// the database's name: daemons writing the same database's backups to the
// same place share a key, and nothing else does.
func LockKey(location, database string) int64 {
	h := fnv.New64a()
	h.Write([]byte(strings.TrimRight(location, "/")))
	h.Write([]byte{0})
	h.Write([]byte(database))
	return int64(h.Sum64())
}

// AdvisoryLock is a Locker on a PostgreSQL session-level advisory lock,
// taken with pg_try_advisory_lock on a connection of its own that stays open
// for as long as the lock is held. It must be the primary: every replica of
// the daemon has to see the same lock table. If the connection drops, the
// server releases the lock; pgx's TCP keepalives (5 minutes) bound how long
// a dead peer keeps it.
type AdvisoryLock struct {
	Conn dump.Conn
	Key  int64
}

var _ Locker = AdvisoryLock{}

// TryLock implements Locker.
func (l AdvisoryLock) TryLock(ctx context.Context) (func(), error) {
	conn, err := dump.Connect(ctx, l.Conn)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	closeConn := func() {
		// Closing the session releases its advisory locks. Bounded, and not
		// tied to ctx: the backup's context may already be cancelled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.Key).Scan(&ok); err != nil {
		closeConn()
		return nil, fmt.Errorf("lock: pg_try_advisory_lock on %s: %s", l.Conn, dump.Redact(err, l.Conn))
	}
	if !ok {
		held := &HeldError{}
		// Best effort: pg_locks shows a bigint key as classid (high half),
		// objid (low half) and objsubid 1, in this database only.
		var app, client *string
		var since *time.Time
		err := conn.QueryRow(ctx, `
			SELECT l.pid, a.application_name, host(a.client_addr), a.backend_start
			FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
			LIMIT 1`, int64(uint32(uint64(l.Key)>>32)), int64(uint32(uint64(l.Key)))).Scan(&held.PID, &app, &client, &since)
		if err == nil {
			if app != nil {
				held.Application = *app
			}
			if client != nil {
				held.Client = *client
			}
			if since != nil {
				held.Since = *since
			}
		}
		closeConn()
		return nil, held
	}
	return closeConn, nil
}
