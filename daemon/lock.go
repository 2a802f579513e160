package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgbackups/pgbackups/dump"
)

// Locker lets one pgbackups at a time back up a database, across every
// process that shares the lock.
type Locker interface {
	// Hold takes the lock without waiting and holds it until release is
	// called. The returned context is ctx, cancelled with ErrLockLost as its
	// cause if the lock is lost meanwhile (the session holding it dropped),
	// so the backup stops instead of running beside another replica's. When
	// another holder has the lock, the error is a *HeldError.
	Hold(ctx context.Context) (held context.Context, release func(), err error)
}

// lockProber is a Locker that can tell whether the lock is free without
// taking it.
type lockProber interface {
	Free(ctx context.Context) (bool, error)
}

// ErrLockLost is the cause a held lock's context carries when the session
// holding the lock went away (errors.Is; the cause itself says why).
var ErrLockLost = errors.New("the backup lock was lost (its database session ended); another pgbackups may take it")

// lockLostError is ErrLockLost with what ended the session.
type lockLostError struct {
	why  string
	code string // the SQLSTATE the server ended the session with, if any
}

func (e *lockLostError) Error() string {
	switch e.code {
	case "57P02", "57P03": // crash_shutdown, cannot_connect_now
		// Not another pgbackups's doing: the whole server is going away.
		return "the database server is restarting, and ended the backup lock's session (" + e.why + ")"
	case "57P01": // admin_shutdown: pg_ctl stop, and pg_terminate_backend too
		return "the server ended the backup lock's session: it is shutting down, an administrator terminated the session, or the database was dropped (DROP DATABASE ... WITH (FORCE)) (" + e.why + ")"
	}
	return "the backup lock was lost (" + e.why + "); another pgbackups may take it"
}

func (e *lockLostError) Is(target error) bool { return target == ErrLockLost }

// sessionEnded is the lockLostError for err, with which the server ended
// the lock's session.
func sessionEnded(err error, c dump.Conn) *lockLostError {
	e := &lockLostError{why: "its database session ended: " + dump.Redact(err, c)}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		e.code = pe.Code
	}
	return e
}

// lockCheckInterval is how often a held lock's session is asked whether it
// still holds the lock: that finds a session cut off without a word (a
// network path gone, a host frozen), which the server cannot tell it.
// A session the server ends is noticed at once (see Hold).
var lockCheckInterval = 10 * time.Second

// lockCheckTimeout bounds one such question.
const lockCheckTimeout = 10 * time.Second

// lockQueryTimeout bounds the questions asked to take the lock or to see
// whether it is free, after the connection (bounded on its own): a server
// or network that goes silent once connected would otherwise hold the
// backup until TCP keepalives give up, most of an hour.
var lockQueryTimeout = 30 * time.Second

// errLockQueryTimeout is the cause of a lock query's context that
// lockQueryTimeout ended.
var errLockQueryTimeout = errors.New("lock query timed out")

// lockQueryContext bounds the lock queries on ctx by lockQueryTimeout.
func lockQueryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, lockQueryTimeout, errLockQueryTimeout)
}

// lockQueryError explains a lock query's failure, naming the bound when it
// was the bound that ended it.
func lockQueryError(qctx context.Context, what string, c dump.Conn, err error) error {
	if errors.Is(context.Cause(qctx), errLockQueryTimeout) {
		return fmt.Errorf("backup lock: %s on %s did not answer within %s: the server is overloaded or stuck, or the network to it is gone", what, c, lockQueryTimeout)
	}
	return fmt.Errorf("backup lock: %s on %s: %s", what, c, dump.Redact(err, c))
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
		// The holder's server backend, not the pgbackups process: kill
		// the wrong pid and a database session goes.
		who = append(who, fmt.Sprintf("server backend pid %d", e.PID))
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
// the daemon has to see the same lock table. If the session ends
// (pg_terminate_backend, a failover, a server restart) the server releases
// the lock; Hold notices as the server ends the session (within
// lockCheckInterval plus lockCheckTimeout when the connection is cut
// without a word) and cancels the backup. The session turns off
// idle_session_timeout for itself. If pgbackups' host dies instead, the
// server keeps the lock until its own TCP keepalives (tcp_keepalives_idle)
// declare the peer dead.
type AdvisoryLock struct {
	Conn dump.Conn
	Key  int64
}

var _ Locker = AdvisoryLock{}

// Hold implements Locker.
//
// While the lock is held, a goroutine waits on the lock session's socket,
// so a session the server ends (pg_terminate_backend, a shutdown or
// restart, a crash, a timeout) is noticed the moment the server says so,
// not at the next check: until the backup stops, another replica could
// take the lock and back up beside it. Every lockCheckInterval it also
// asks the session whether it still holds the lock, for a session cut off
// silently.
func (l AdvisoryLock) Hold(ctx context.Context) (context.Context, func(), error) {
	conn, release, err := l.tryLock(ctx)
	if err != nil {
		return nil, nil, err
	}
	held, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			// Nothing is LISTENed to: this returns when the server sends
			// something unasked (the FATAL error it ends a session with),
			// the connection breaks, or the wait times out.
			wctx, wcancel := context.WithTimeout(held, lockCheckInterval)
			err := conn.PgConn().WaitForNotification(wctx)
			timedOut := wctx.Err() != nil
			wcancel()
			if held.Err() != nil {
				return // released, or ctx ended
			}
			if err != nil && !timedOut {
				cancel(sessionEnded(err, l.Conn))
				return
			}
			if err == nil {
				continue // a notification: not expected, nothing here LISTENs
			}
			cctx, ccancel := context.WithTimeout(held, lockCheckTimeout)
			var n int
			err = conn.QueryRow(cctx, `SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted`).Scan(&n)
			checkTimedOut := cctx.Err() != nil
			ccancel()
			switch {
			case held.Err() != nil:
				return
			case err != nil && checkTimedOut:
				cancel(&lockLostError{why: fmt.Sprintf("its database session did not answer a check within %s: the network to the server or the server is gone", lockCheckTimeout)})
				return
			case err != nil:
				cancel(sessionEnded(err, l.Conn))
				return
			case n == 0:
				cancel(&lockLostError{why: "its database session no longer holds it"})
				return
			}
		}
	})
	return held, func() {
		cancel(nil) // stops the watcher
		wg.Wait()
		release()
	}, nil
}

// Free implements lockProber: it reports whether nobody holds the lock,
// from pg_locks, without taking it (taking it, even for a moment, would
// make a capture arriving then skip).
func (l AdvisoryLock) Free(ctx context.Context) (bool, error) {
	conn, err := dump.Connect(ctx, l.Conn)
	if err != nil {
		return false, fmt.Errorf("%w (looking whether the backup lock is free)", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	qctx, qcancel := lockQueryContext(ctx)
	defer qcancel()
	var n int
	err = conn.QueryRow(qctx, `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = $1::bigint::oid AND objid = $2::bigint::oid`, int64(uint32(uint64(l.Key)>>32)), int64(uint32(uint64(l.Key)))).Scan(&n)
	if err != nil {
		return false, lockQueryError(qctx, "pg_locks", l.Conn, err)
	}
	return n == 0, nil
}

// TryLock takes the lock without watching it: for short critical sections.
func (l AdvisoryLock) TryLock(ctx context.Context) (func(), error) {
	_, release, err := l.tryLock(ctx)
	return release, err
}

func (l AdvisoryLock) tryLock(ctx context.Context) (*pgx.Conn, func(), error) {
	conn, err := dump.Connect(ctx, l.Conn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (taking the backup lock)", err)
	}
	closeConn := func() {
		// Closing the session releases its advisory locks. Bounded, and not
		// tied to ctx: the backup's context may already be cancelled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}
	// The lock lives as long as this session: a role's or database's
	// idle_session_timeout (PostgreSQL 14) would end it between checks and
	// abort every backup longer than the timeout. pg_dump, likewise, turns
	// off the timeouts that would end its own session. Only where the
	// setting exists (pg_settings), so older servers are not asked to set
	// what they do not know.
	qctx, qcancel := lockQueryContext(ctx)
	defer qcancel()
	// Every replica's sessions are "pgbackups"; the lock's names its host,
	// so a replica that finds the lock taken can say which one holds it.
	// An application_name the URL sets is left as it is.
	app := conn.Config().RuntimeParams["application_name"]
	if app == "pgbackups" {
		if host, err := os.Hostname(); err == nil && host != "" {
			app = lockAppName(host)
		}
	}
	if _, err := conn.Exec(qctx, `SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'
		UNION ALL SELECT set_config('application_name', $1, false)`, app); err != nil {
		closeConn()
		return nil, nil, lockQueryError(qctx, "session settings", l.Conn, err)
	}
	var ok bool
	if err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, l.Key).Scan(&ok); err != nil {
		// Closing the session lets go of a lock granted as the bound ran out.
		closeConn()
		return nil, nil, lockQueryError(qctx, "pg_try_advisory_lock", l.Conn, err)
	}
	if !ok {
		held := &HeldError{}
		// Best effort: pg_locks shows a bigint key as classid (high half),
		// objid (low half) and objsubid 1, in this database only.
		var app, client *string
		var since *time.Time
		err := conn.QueryRow(qctx, `
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
		return nil, nil, held
	}
	return conn, closeConn, nil
}

// lockAppName is the lock session's application_name on host. The server
// keeps 63 bytes of it; a longer host name (a Kubernetes Deployment's pod:
// its name, then the ReplicaSet's and the pod's hashes) keeps its end,
// which tells replicas apart, rather than its start.
func lockAppName(host string) string {
	const maxLen, prefix = 63, "pgbackups@"
	if len(prefix)+len(host) <= maxLen {
		return prefix + host
	}
	const cut = prefix + ".."
	return cut + host[len(host)-(maxLen-len(cut)):]
}
