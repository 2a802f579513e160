package dump

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// BackendNice is a Monitor that lowers the CPU priority of the dump's
// server backend: the PostgreSQL process running pg_dump's COPY, which
// PGBACKUPS_NICE cannot reach (it is not pgbackups' child).
//
// On a small host this backend is a third of the backup's CPU (9 s of
// about 24 s for bench/nostall.sh's 825 MiB dump) and competes with the
// application's backends on equal terms. Measured on 2 vCPUs at 30% of the
// application's capacity: the server's COPY alone, read at 20 MiB/s by
// psql, moved the application's p99 from 1.0x to 2.7x, and to 1.6x with
// the backend at nice 10; whole captures with the defaults went from 7.5x
// to 5.0x and from 6.6x to 4.1x (two runs of three rounds, medians),
// finishing somewhat later (41 s against 35 s, 38 s against 31 s; plain
// pg_dump -Fc takes 47 s there). Near saturation (no-backup p99 already 60-70 ms) nice 10
// made no difference either way in two rounds; an older measurement
// (bench/results-backend-priority.md, before the adaptive rate cut the
// dump's rate under load) had found nice 19 much worse there, which is why
// the default is 10, not 19: a backend at nice 10 still gets a tenth of a
// contended CPU, so one holding a lock others wait for is not starved.
//
// It can only do so where it can see and may renice the backend: the same
// host and PID namespace (a systemd unit or cron job next to PostgreSQL, a
// pod with shareProcessNamespace), as the server's user or with
// CAP_SYS_NICE. Elsewhere it logs why (at info level once, then at debug
// level) and the backup goes on. The backend's identity is checked in
// /proc before anything is changed, so a pid that means another process
// here is left alone. IO priority is left alone: an idle IO class can
// starve a backend's reads outright under BFQ, holding the dump's snapshot
// (and vacuum) back for as long, while CPU niceness only shares.
//
// A backend that outlives the dump (pg_dump connected through a
// session-pooling proxy, which keeps the server connection for the next
// client) gets its niceness back where permitted, and a warning otherwise.
type BackendNice struct {
	Nice     int // 1-19; 0 leaves the backend alone
	Logger   *slog.Logger
	Interval time.Duration // how often to look for the backend until it appears; default 50ms

	told atomic.Bool // why the backend could not be lowered was logged at info level
}

// backendNiceGrace is how long a lowered backend has to exit after the
// dump before it counts as having outlived it.
const backendNiceGrace = 2 * time.Second

// backendQuery finds the dump's backend and what its process title shows
// of its client (client_port is -1 for a Unix socket, NULL only for
// sessions the role may not see).
const backendQuery = `SELECT pid, client_port FROM pg_stat_activity
WHERE application_name = $1 AND backend_type = 'client backend' AND client_port IS NOT NULL`

// errSeveral: more than one session carries the dump's application_name
// (any session of the role can set it), so which is the dump's is unknown.
var errSeveral = errors.New("several sessions carry the dump's application_name")

// Watch lowers the backend of the dump r, once it appears, and restores it
// if it outlives the dump. It never fails the backup.
func (b *BackendNice) Watch(ctx context.Context, r Running) error {
	if b.Nice <= 0 {
		return nil
	}
	log := r.logger(b.Logger, "backend_priority")
	interval := b.Interval
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	obs := &observer{conn: r.Conn, log: log, what: "backend priority", ownRole: true}
	var pid, port int
	start := time.Now()
	for {
		c, err := obs.get(ctx)
		if errors.Is(err, errOldServer) {
			return nil
		}
		var found [][2]int
		if err == nil {
			var p [2]int
			rows, qerr := c.Query(ctx, backendQuery, r.AppName)
			if qerr == nil {
				_, qerr = pgx.ForEachRow(rows, []any{&p[0], &p[1]}, func() error {
					found = append(found, p)
					return nil
				})
			}
			if qerr != nil {
				obs.fail(ctx, qerr)
			}
		}
		if len(found) > 1 {
			obs.close(ctx)
			log.Warn("the dump's server backend runs at its normal priority", "reason", errSeveral.Error(), "application_name", r.AppName)
			return nil
		}
		if len(found) == 1 {
			pid, port = found[0][0], found[0][1]
			break
		}
		select {
		case <-ctx.Done():
			obs.close(ctx)
			return nil
		case <-time.After(interval):
		}
		// pg_dump connects as it starts, so the backend normally shows up at
		// the first or second look. One that does not (the watchdog says
		// so) is looked for once a second after the first two.
		if time.Since(start) > 2*time.Second {
			interval = max(interval, time.Second)
		}
	}
	prev, err := lowerBackend(pid, port, b.Nice)
	if err != nil && !sessionLives(ctx, obs, pid, r.AppName) {
		// A dump of a few tables may be over already, its backend gone
		// from /proc before it was looked at: that is no reason to give.
		obs.close(ctx)
		log.Debug("the dump's session ended before its server backend was lowered", "pid", pid)
		return nil
	}
	obs.close(ctx)
	if err != nil {
		// The same reason every backup (the deployment decides it): say it
		// once at info level.
		level := slog.LevelDebug
		if !b.told.Swap(true) {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "the dump's server backend runs at its normal priority", "pid", pid, "reason", err.Error())
		return nil
	}
	if prev >= b.Nice {
		log.Debug("the dump's server backend already runs at low priority", "pid", pid, "nice", prev)
		return nil
	}
	log.Debug("lowered the dump's server backend", "pid", pid, "nice", b.Nice)
	<-ctx.Done()

	deadline := time.Now().Add(backendNiceGrace)
	for backendAlive(pid, port) {
		if time.Now().After(deadline) {
			if err := restoreBackend(pid, port, prev); err != nil {
				log.Warn("the dump's server backend outlived the dump (a connection pooler keeping it?) and keeps its lowered priority; point PGBACKUPS_DUMP_URL at the server itself",
					"pid", pid, "nice", b.Nice, "err", err)
			} else {
				log.Info("the dump's server backend outlived the dump; its priority is restored", "pid", pid, "nice", prev)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// errNotHere says the backend's pid is not PostgreSQL's process in this
// PID namespace.
var errNotHere = errors.New("not visible from here: PostgreSQL runs on another host or in another PID namespace (a pod needs shareProcessNamespace), or /proc hides other users' processes (systemd's ProtectProc=invisible)")

// isBackendTitle reports whether a process title (/proc/pid/cmdline, with
// NULs as spaces) is that of a PostgreSQL backend serving a client on
// clientPort, -1 for a Unix socket. PostgreSQL sets it at connection to
// "postgres: [cluster_name: ]user database host(port) ..." or "...
// [local] ..." (update_process_title only governs the activity after it).
func isBackendTitle(title string, clientPort int) bool {
	rest, ok := strings.CutPrefix(title, "postgres: ")
	if !ok {
		return false
	}
	if clientPort < 0 {
		return strings.Contains(rest, " [local]")
	}
	return strings.Contains(rest, "("+strconv.Itoa(clientPort)+")")
}

// sessionLives reports whether the session pid of the dump appName is
// still in pg_stat_activity: when it is, a backend missing from /proc is
// not this host's to see. Unsure (the query failed) counts as living.
func sessionLives(ctx context.Context, obs *observer, pid int, appName string) bool {
	c, err := obs.get(ctx)
	if err != nil {
		return ctx.Err() == nil
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2`, pid, appName).Scan(&n); err != nil {
		obs.fail(ctx, err)
		return ctx.Err() == nil
	}
	return n > 0
}
