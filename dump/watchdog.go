package dump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// BlockingPolicy is what the watchdog does when the dump blocks other
// sessions past the threshold (PGBACKUPS_ON_BLOCKING).
type BlockingPolicy string

// Blocking policies.
const (
	BlockingWarn  BlockingPolicy = "warn"  // log each blocked session once
	BlockingAbort BlockingPolicy = "abort" // stop the dump with a *BlockingError
)

// Watchdog defaults.
const (
	DefaultBlockingThreshold = 10 * time.Second
	defaultWatchInterval     = time.Second
	// How long the dump's backend may stay out of sight before the
	// watchdog says it cannot see it.
	missingBackendGrace = 10 * time.Second
)

// Watchdog is a Monitor that looks, while a dump runs, for sessions waiting
// on locks the dump's backend holds. pg_dump takes ACCESS SHARE on every
// table it dumps and keeps it to the end. That blocks nothing an
// application does, except DDL: an ALTER TABLE waits for the dump, and from
// then on every query on that table queues behind the ALTER. The dump
// "blocks" the whole application without holding any lock it would see.
// The watchdog therefore counts both the sessions waiting on the dump's
// backend and, transitively, those waiting on them.
//
// It polls pg_stat_activity and calls pg_blocking_pids() only for sessions
// whose wait_event_type is Lock: pg_blocking_pids takes the lock manager's
// locks, and on a healthy database no session waits, so the watchdog costs
// one cheap query per Interval. A session's wait is measured from its
// statement's query_start, which is when a blocked ALTER or SELECT began to
// wait for any statement that waits on its first lock. The monitoring role
// needs pg_read_all_stats (or pg_monitor) to see other roles' sessions; the
// watchdog warns when it lacks it.
type Watchdog struct {
	Policy    BlockingPolicy // warn (the default) or abort
	Threshold time.Duration  // how long a session may wait; default 10s
	Interval  time.Duration  // how often to look; default 1s
	Logger    *slog.Logger

	blocking     atomic.Int64
	missingGrace time.Duration // tests: missingBackendGrace when 0
}

// Blocking is how many sessions the running dump blocks, directly or
// transitively, as of the watchdog's last look (0 when no dump runs): a gauge
// for metrics.
func (w *Watchdog) Blocking() int { return int(w.blocking.Load()) }

// BlockingError is the error a Watchdog with the abort policy stops the dump
// with. The daemon can tell it from other failures (errors.As) to report it
// and retry later, once the migration that ran into the dump is done.
type BlockingError struct {
	Backend   int              // the dump's server backend pid
	Threshold time.Duration    // PGBACKUPS_BLOCKING_THRESHOLD
	Blocked   []BlockedSession // longest-waiting first
}

// BlockedSession is a session the dump held up.
type BlockedSession struct {
	PID       int
	BlockedBy []int         // pg_blocking_pids of the session
	Direct    bool          // waits on the dump's backend itself, not on a session queued behind it
	Waiting   time.Duration // how long it has waited for its lock (before PostgreSQL 14: how long its statement has run)
	Query     string        // the statement's head up to its first literal (see statementHead)
}

func (e *BlockingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "watchdog: the dump (backend pid %d) blocked %d session(s) past PGBACKUPS_BLOCKING_THRESHOLD=%s and PGBACKUPS_ON_BLOCKING=abort stopped it so they can proceed", e.Backend, len(e.Blocked), e.Threshold)
	const shown = 3
	for i, s := range e.Blocked {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(e.Blocked)-shown)
			break
		}
		how := "on the dump"
		if !s.Direct {
			how = "queued behind pid " + joinPIDs(s.BlockedBy)
		}
		fmt.Fprintf(&b, "; pid %d waited %s %s: %q", s.PID, s.Waiting.Round(100*time.Millisecond), how, truncate(s.Query, 100))
	}
	return b.String()
}

func joinPIDs(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

// activity is one row of the watchdog's pg_stat_activity query.
type activity struct {
	PID      int
	IsDump   bool          // the dump's own backend
	Blockers []int         // pg_blocking_pids, for sessions waiting on a lock
	Waited   time.Duration // a waiting session's wait (see waitQuery14), else how long its statement has run
	Query    string
}

// blockedBy finds the dump's backends among rows and every session waiting
// on them, directly or through a chain of waiters. The result is sorted
// longest-waiting first.
func blockedBy(rows []activity) (dump []int, blocked []BlockedSession) {
	culprits := map[int]bool{}
	for _, r := range rows {
		if r.IsDump {
			dump = append(dump, r.PID)
			culprits[r.PID] = true
		}
	}
	if len(dump) == 0 {
		return nil, nil
	}
	dumpPID := map[int]bool{}
	for _, p := range dump {
		dumpPID[p] = true
	}
	added := map[int]bool{}
	for changed := true; changed; {
		changed = false
		for _, r := range rows {
			if culprits[r.PID] || !slices.ContainsFunc(r.Blockers, func(p int) bool { return culprits[p] }) {
				continue
			}
			culprits[r.PID], added[r.PID], changed = true, true, true
		}
	}
	for _, r := range rows {
		if !added[r.PID] {
			continue
		}
		blocked = append(blocked, BlockedSession{
			PID:       r.PID,
			BlockedBy: r.Blockers,
			Direct:    slices.ContainsFunc(r.Blockers, func(p int) bool { return dumpPID[p] }),
			Waiting:   r.Waited,
			Query:     r.Query,
		})
	}
	slices.SortFunc(blocked, func(a, b BlockedSession) int {
		if c := cmp.Compare(b.Waiting, a.Waiting); c != 0 {
			return c
		}
		return cmp.Compare(a.PID, b.PID)
	})
	return dump, blocked
}

// watchdogQuery lists the dump's backend and every session waiting on a
// heavyweight lock, with whom it waits for. CASE keeps pg_blocking_pids
// from running for sessions that do not wait. %s is how long a session has
// waited: waitQuery14 or waitQueryOld.
const watchdogQuery = `SELECT pid, application_name = $1,
	CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END,
	COALESCE(%s, 0),
	COALESCE(left(query, 1000), '')
FROM pg_stat_activity a
WHERE pid <> pg_backend_pid() AND (application_name = $1 OR wait_event_type = 'Lock')`

// waitQueryOld is how long the statement has run: before PostgreSQL 14 the
// closest measure of a lock wait. It overstates the wait of a statement
// that ran a while before it waited: a migration's multi-statement string,
// or CREATE INDEX CONCURRENTLY waiting for the dump's snapshot at its end.
const waitQueryOld = `extract(epoch FROM clock_timestamp() - query_start)::float8`

// waitQuery14 is how long the session has waited for its lock
// (pg_locks.waitstart, PostgreSQL 14), the statement's run time for a
// session that does not wait (the dump's own). A waiter without a
// waitstart (set a moment after the wait begins, or granted since the
// activity row was read) has just begun: 0, not its statement's run time.
const waitQuery14 = `extract(epoch FROM clock_timestamp() - CASE WHEN wait_event_type = 'Lock'
		THEN COALESCE((SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), clock_timestamp())
		ELSE query_start END)::float8`

// Watch is the Monitor: it looks every Interval until ctx ends, and returns
// a *BlockingError under the abort policy. Failures to query are logged,
// never fatal to the backup: pg_dump fails by itself when the server goes.
func (w *Watchdog) Watch(ctx context.Context, r Running) error {
	threshold, interval := w.Threshold, w.Interval
	if threshold <= 0 {
		threshold = DefaultBlockingThreshold
	}
	if interval <= 0 {
		interval = defaultWatchInterval
	}
	missingGrace := cmp.Or(w.missingGrace, missingBackendGrace)
	log := r.logger(w.Logger, "watchdog")
	defer w.blocking.Store(0)
	obs := &observer{conn: r.Conn, log: log, what: "watchdog"}
	defer obs.close(ctx)

	warned := map[int]bool{}
	var missingSince time.Time
	missingWarned, seen := false, false // seen: the dump's backend was in pg_stat_activity once
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rows, err := obs.activity(ctx, r.AppName)
		if errors.Is(err, errOldServer) {
			log.Warn("watchdog disabled: it needs PostgreSQL 10 or newer")
			return nil
		}
		if err != nil {
			continue
		}
		dump, blocked := blockedBy(rows)
		w.blocking.Store(int64(len(blocked)))
		if len(dump) == 0 {
			if missingSince.IsZero() {
				missingSince = time.Now()
			}
			if !missingWarned && time.Since(missingSince) >= missingGrace {
				missingWarned = true
				why := "an application_name in the database URL overrides pgbackups' own"
				if seen {
					why = "it ended since it was seen (terminated, or its connection lost: pg_dump then fails)"
				}
				log.Warn("the dump's backend is not in pg_stat_activity, so the watchdog cannot see what it blocks: "+why,
					"application_name", r.AppName)
			}
			continue
		}
		missingSince, seen = time.Time{}, true
		var over []BlockedSession
		for _, s := range blocked {
			if s.Waiting >= threshold {
				over = append(over, s)
			}
		}
		if len(over) == 0 {
			continue
		}
		if w.Policy == BlockingAbort {
			log.Warn("the dump blocks other sessions; aborting it", "sessions", len(blocked), "longest_wait", blocked[0].Waiting.String())
			return &BlockingError{Backend: dump[0], Threshold: threshold, Blocked: blocked}
		}
		for _, s := range over {
			if warned[s.PID] {
				continue
			}
			warned[s.PID] = true
			log.Warn("the dump blocks a session; PGBACKUPS_ON_BLOCKING=abort would stop the dump",
				"pid", s.PID, "waiting", s.Waiting.Round(time.Millisecond).String(), "direct", s.Direct,
				"blocked_by", s.BlockedBy, "query", truncate(s.Query, 200), "sessions_blocked", len(blocked))
		}
	}
}

// observer is a monitor's own connection to the server pg_dump reads from.
// It connects lazily, reconnects after errors, and logs a failure once
// until it recovers.
type observer struct {
	conn Conn
	log  *slog.Logger
	what string
	// ownRole: the monitor looks only at the dump's session, which runs as
	// its own role, so it needs no pg_read_all_stats and does not ask.
	ownRole bool

	c       *pgx.Conn
	failing bool
	checked bool
	version int // server_version_num, once checked
}

// minMonitorVersion: pg_stat_activity.backend_type and pg_read_all_stats
// arrived in PostgreSQL 10.
const minMonitorVersion = 100000

// errOldServer disables a monitor for good.
var errOldServer = errors.New("monitors need PostgreSQL 10 or newer")

func (o *observer) get(ctx context.Context) (*pgx.Conn, error) {
	if o.c != nil {
		return o.c, nil
	}
	c, err := Connect(ctx, o.conn)
	if err != nil {
		return nil, o.fail(ctx, err)
	}
	if !o.checked {
		var num int
		var seesAll *bool // NULL before PostgreSQL 10
		err := c.QueryRow(ctx, `SELECT current_setting('server_version_num')::int,
			CASE WHEN current_setting('server_version_num')::int >= 100000
				THEN pg_has_role('pg_read_all_stats', 'USAGE') END`).Scan(&num, &seesAll)
		if err == nil && num < minMonitorVersion {
			err = errOldServer
		}
		if err != nil {
			c.Close(context.WithoutCancel(ctx))
			if errors.Is(err, errOldServer) {
				return nil, err
			}
			return nil, o.fail(ctx, err)
		}
		o.checked, o.version = true, num
		if !*seesAll && !o.ownRole {
			o.log.Warn(o.what+" sees only sessions of its own role: GRANT pg_read_all_stats (or pg_monitor) to it", "role", o.conn.User())
		}
	}
	o.c = c
	return c, nil
}

// fail logs err the first time in a row and drops the connection.
func (o *observer) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		// Stopped or timed out, not a database failure to report; a query
		// cut short can leave the connection unusable, so drop it.
		o.close(ctx)
		return err
	}
	if !o.failing {
		o.failing = true
		o.log.Warn(o.what+" cannot query the database; the backup goes on without it, retrying", "server", o.conn.String(), "err", Redact(err, o.conn))
	}
	o.close(ctx)
	return err
}

func (o *observer) ok() {
	if o.failing {
		o.failing = false
		o.log.Info(o.what + " reaches the database again")
	}
}

func (o *observer) close(ctx context.Context) {
	if o.c != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		o.c.Close(cctx)
		cancel()
		o.c = nil
	}
}

// activity runs watchdogQuery.
func (o *observer) activity(ctx context.Context, appName string) ([]activity, error) {
	c, err := o.get(ctx)
	if err != nil {
		return nil, err
	}
	wait := waitQueryOld
	if o.version >= 140000 {
		wait = waitQuery14
	}
	rows, err := c.Query(ctx, fmt.Sprintf(watchdogQuery, wait), appName)
	if err != nil {
		return nil, o.fail(ctx, err)
	}
	var out []activity
	var a activity
	var blockers []int32
	var secs float64
	_, err = pgx.ForEachRow(rows, []any{&a.PID, &a.IsDump, &blockers, &secs, &a.Query}, func() error {
		r := a
		r.Blockers = make([]int, len(blockers))
		for i, p := range blockers {
			r.Blockers[i] = int(p)
		}
		r.Waited = time.Duration(secs * float64(time.Second))
		r.Query = statementHead(r.Query)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, o.fail(ctx, err)
	}
	o.ok()
	return out, nil
}

// statementHeadWords bounds statementHead.
const statementHeadWords = 12

// statementHead is the start of a statement up to its first literal: the
// command and the objects it names, which is what an operator needs to see
// which migration or query waits on the dump. "ALTER TABLE events ADD COLUMN
// x int" stays whole; "UPDATE users SET token = 'abc' WHERE id = 7" becomes
// "UPDATE users SET token …". Literals can be personal data or secrets, and
// the watchdog's text goes to logs, errors and failed manifests, so the head
// ends at the first word that holds a quote, a dollar sign (dollar quoting,
// parameters), a number not part of an identifier, a comment (-- or /*,
// which may say anything), or an assignment or comparison ('=', TO), after
// which even a bare word can be a value (SET app.key TO secret). Whitespace
// is collapsed.
func statementHead(q string) string {
	words := strings.Fields(q)
	for i, w := range words {
		if i == statementHeadWords || hasLiteral(w) || strings.EqualFold(w, "to") {
			if i == 0 {
				return "…"
			}
			return strings.Join(words[:i], " ") + " …"
		}
	}
	return strings.Join(words, " ")
}

// hasLiteral reports whether a word of SQL holds (the start of) a literal,
// a comment, or an assignment or comparison operator.
func hasLiteral(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c == '\'' || c == '$' || c == '=' || c == '<' || c == '>' || c == '!':
			return true
		case (c == '-' || c == '/') && i+1 < len(w) && (w[i+1] == '-' || w[i+1] == '*'):
			return true
		case c >= '0' && c <= '9':
			if i == 0 {
				return true
			}
			p := w[i-1]
			if !(p == '_' || p >= '0' && p <= '9' || p >= 'a' && p <= 'z' || p >= 'A' && p <= 'Z' || p >= 0x80) {
				return true
			}
		}
	}
	return false
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
