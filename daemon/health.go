package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

// Health statuses in /healthz.
const (
	StatusOK      = "ok"      // the last backup succeeded, or none is due yet
	StatusFailing = "failing" // the last backup failed
	StatusOverdue = "overdue" // the run due after the last success did not succeed within the grace
	// StatusStarting: the daemon is still reading its last outcome from
	// storage at start-up (at most latestTimeout), so it cannot say yet.
	StatusStarting = "starting"
)

// Success is the last backup that completed.
type Success struct {
	ID          string    `json:"id"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Duration    float64   `json:"duration_seconds"`
	DumpBytes   int64     `json:"dump_bytes"`
	StoredBytes int64     `json:"stored_bytes"`
	// By is "this daemon", or "storage" for a backup this process did not
	// take (found at start-up, or taken by another replica).
	By       string   `json:"by"`
	Warnings []string `json:"warnings,omitempty"`
}

func successOf(m storage.Manifest, by string) *Success {
	return &Success{
		ID:          m.ID,
		StartedAt:   m.StartedAt,
		FinishedAt:  m.FinishedAt,
		Duration:    m.Duration().Seconds(),
		DumpBytes:   m.DumpBytes,
		StoredBytes: m.StoredBytes,
		By:          by,
		Warnings:    m.Warnings,
	}
}

// Failure is the last backup attempt that failed.
type Failure struct {
	At       time.Time `json:"at"`
	Error    string    `json:"error"`
	Attempt  int       `json:"attempt"`
	Blocking bool      `json:"blocking,omitempty"` // stopped by PGBACKUPS_ON_BLOCKING=abort
}

// Skip is the last scheduled run this daemon skipped.
type Skip struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Running is the backup in progress.
type Running struct {
	StartedAt time.Time `json:"started_at"`
	Attempt   int       `json:"attempt"`
	Bytes     int64     `json:"bytes"` // uncompressed dump bytes so far
}

// Retention is the last retention pass this daemon ran (after one of its
// backups, under the lock).
type Retention struct {
	At      time.Time `json:"at"`      // when the pass ended
	Removed int       `json:"removed"` // backups and leftover objects it deleted
	// LeftAlone is how many backups it found and neither deleted nor
	// counted as good; absent when the pass failed before it could tell.
	LeftAlone *int   `json:"left_alone,omitempty"`
	Error     string `json:"error,omitempty"` // the pass did not complete
}

// Health is the /healthz body. Nothing in it is secret: no URLs, no
// connection strings; errors come redacted from the capture.
type Health struct {
	Status      string   `json:"status"`
	Reason      string   `json:"reason,omitempty"`
	Schedule    string   `json:"schedule"`
	TimeZone    string   `json:"time_zone,omitempty"`
	NextRun     *string  `json:"next_run"` // RFC 3339 in the schedule's zone
	Running     *Running `json:"running,omitempty"`
	LastSuccess *Success `json:"last_success"`
	LastFailure *Failure `json:"last_failure"`
	LastSkip    *Skip    `json:"last_skipped,omitempty"`
	// ConsecutiveFailures counts the failed attempts (retries included)
	// since the last success.
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastRetention       *Retention `json:"last_retention,omitempty"`
	Warnings            []string   `json:"warnings,omitempty"`
	Started             time.Time  `json:"started_at"`
	Version             string     `json:"version,omitempty"`
}

// state is what the daemon knows about its backups. Every read and write
// goes through its mutex; the clock is passed in, so tests drive it.
type state struct {
	mu         sync.Mutex
	sched      *schedule.Schedule
	grace      time.Duration
	start      time.Time // when New built the daemon
	schedStart time.Time // when the scheduler started; zero before
	version    string
	success    *Success
	failure    *Failure
	skip       *Skip
	running    *Running
	warnings   []string // from the last success: the size guard's, for one
	failures   int      // failed attempts since the last success
	retention  *Retention
	// latestErr is why storage could not be read for the newest backups
	// (at start-up, or while following a lock holder); nil once a read
	// succeeds. Without a known success it means the last one is unknown,
	// not that there is none.
	latestErr error
	// unread is why the start-up read of storage, or its re-read every
	// minute, failed; nil once one works. /healthz says failing on it
	// (until a success), not on a follower's one-off read that failed.
	unread  error
	tick    time.Time // when the scheduler last started a run
	runEnd  time.Time // when the last scheduled run ended
	loading bool      // reading the last outcome from storage at start-up
}

func newState(s *schedule.Schedule, grace time.Duration, start time.Time, version string) *state {
	return &state{sched: s, grace: grace, start: start, version: version}
}

// succeeded records a completed backup, unless a newer one is already known
// (storage, read while a backup runs, may return an older one). Health
// compares it with the last failure by time.
// It reports whether x is now the last success.
func (s *state) succeeded(x *Success) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.success != nil && !x.FinishedAt.After(s.success.FinishedAt) {
		return false
	}
	s.success = x
	s.warnings = x.Warnings
	if s.failure == nil || !s.failure.At.After(x.FinishedAt) {
		s.failures = 0
	}
	return true
}

// failedInStorage records a failure read from storage, unless this daemon
// knows a failure already, or a success after it: a read that lands after
// a run here must not replace what that run recorded.
func (s *state) failedInStorage(f *Failure) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != nil || s.success != nil && !f.At.After(s.success.FinishedAt) {
		return false
	}
	s.failure = f
	s.failures++
	return true
}

func (s *state) failed(f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = f
	s.failures++
}

// consecutiveFailures is how many attempts failed since the last success.
func (s *state) consecutiveFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures
}

// retained records the end of a retention pass.
func (s *state) retained(r *Retention) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retention = r
}

// latestUnknown reports whether storage's newest backups are still
// unknown: the start-up read (or its last re-read) failed, and no backup
// has succeeded since. A failed run does not make them known.
func (s *state) latestUnknown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unread != nil && s.success == nil
}

// storageRead records how the start-up read of storage, or a re-read of
// it, went (nil: it worked, backups or none).
func (s *state) storageRead(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unread = err
}

// readLatest records how the last read of storage's newest backups went.
func (s *state) readLatest(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latestErr = err
}

func (s *state) skipped(k *Skip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skip = k
}

func (s *state) begin(at time.Time, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = &Running{StartedAt: at, Attempt: attempt}
}

// setLoading marks the start-up read of storage as under way or done.
func (s *state) setLoading(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loading = on
}

func (s *state) ticked(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick = at
}

// scheduling records when the scheduler started: runs due before it
// (while the daemon read storage) were never the scheduler's to start.
func (s *state) scheduling(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schedStart = at
}

func (s *state) startedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start
}

func (s *state) ranUntil(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runEnd = at
}

// livenessSlack is how late a scheduled run may start before /livez says
// the scheduler is stuck.
const livenessSlack = 10 * time.Minute

// alive reports whether the daemon works at now, whatever its backups'
// outcome: its state answers (a deadlock would hang the request instead)
// and, unless a scheduled run is under way (inRun: retention, retries and
// following included), the scheduler started the first run due after the
// last one ended (runs due while one was under way are dropped, not late)
// or after it started (a run due while the daemon read storage at
// start-up was never the scheduler's; Run starts it itself).
func (s *state) alive(now time.Time, inRun bool) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sched == nil || s.running != nil || inRun {
		return true, ""
	}
	ref := s.start
	for _, t := range []time.Time{s.schedStart, s.tick, s.runEnd} {
		if t.After(ref) {
			ref = t
		}
	}
	if due := s.sched.Next(ref); !due.IsZero() && now.Sub(due) > livenessSlack {
		return false, fmt.Sprintf("the scheduled run due at %s has not started: the scheduler is stuck", due.UTC().Format(time.RFC3339))
	}
	return true, ""
}

func (s *state) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = nil
}

func (s *state) lastSuccess() *Success {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.success
}

// evaluate decides the health at now:
//   - no schedule: ok (nothing is due, ever);
//   - still reading storage at start-up: starting (not ok: it does not
//     know the last outcome yet);
//   - the newest outcome is a failure: failing;
//   - the run due after the last success (this daemon's, or one read from
//     storage at start-up) has not produced a success within the grace:
//     overdue. Only a daemon that knows of no success at all counts from
//     its start-up, so a restart does not hide a backup that keeps
//     failing where no failure is stored (a process killed mid-backup,
//     a failure that wrote no manifest). A stale storage makes a
//     restarted daemon overdue at once: restarts belong on /livez (or
//     `pgbackups healthcheck --live`), which this does not touch. While
//     the due run is still going here, or another process took it (the
//     run was skipped), the deadline moves to the run after it: a long
//     backup is not overdue while it runs, but one still running when
//     the next is due is;
//   - otherwise ok.
func (s *state) evaluate(now time.Time) (status, reason string) {
	if s.sched == nil {
		return StatusOK, "no schedule (PGBACKUPS_SCHEDULE is unset): no backups are run"
	}
	if s.loading {
		return StatusStarting, "reading the newest backups from storage"
	}
	if f := s.failure; f != nil && (s.success == nil || f.At.After(s.success.FinishedAt)) {
		return StatusFailing, "the last backup failed"
	}
	if s.unread != nil && s.success == nil {
		// A bucket mistyped, credentials refused, an endpoint down: the
		// next backup fails the same way, and on a daily schedule it may
		// be a day away. Said now; read again every minute.
		return StatusFailing, "storage could not be read since start-up (read again every minute): " + s.unread.Error()
	}
	base, since := s.start, "start-up at "+s.start.UTC().Format(time.RFC3339)
	if s.success != nil && !s.success.StartedAt.IsZero() {
		base, since = s.success.StartedAt, "the last success (started "+s.success.StartedAt.UTC().Format(time.RFC3339)+")"
		// A success still running at a run's time covers that run, though
		// it started just before it: a capture that held the lock across
		// it (the run then followed it), a replica whose clock is a second
		// behind. Not one that started for the run before and overran into
		// it: that run was skipped, and is overdue.
		if r := lastRun(s.sched, s.success.FinishedAt); r.After(base) && !overran(s.sched, base, r) {
			base = r
		}
	}
	due := s.sched.Next(base)
	if due.IsZero() {
		return StatusOK, ""
	}
	deadline := due.Add(s.grace)
	if (s.running != nil && !s.running.StartedAt.Before(due)) || (s.skip != nil && !s.skip.At.Before(due)) {
		if next := s.sched.Next(due); !next.IsZero() {
			deadline = next.Add(s.grace)
		}
	}
	if now.After(deadline) {
		reason := fmt.Sprintf("no backup succeeded since %s: the run due at %s is late by %s (PGBACKUPS_HEALTH_GRACE %s)",
			since, due.UTC().Format(time.RFC3339), now.Sub(due).Round(time.Second), s.grace)
		if s.skip != nil && !s.skip.At.Before(due) {
			// The usual cause when nothing failed here: say who has the
			// runs (a holder stuck on the lock, a replica that never
			// stores its backups).
			reason += "; the last run, at " + s.skip.At.UTC().Format(time.RFC3339) + ", was skipped: " + s.skip.Reason
		}
		return StatusOverdue, reason
	}
	return StatusOK, ""
}

// snapshot is the /healthz body at now; bytes is the running backup's
// progress.
func (s *state) snapshot(now time.Time, bytes int64) Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{
		Schedule:    s.sched.String(),
		LastSuccess: s.success,
		LastFailure: s.failure,
		LastSkip:    s.skip,
		Warnings:    s.warnings,
		Started:     s.start,
		Version:     s.version,

		ConsecutiveFailures: s.failures,
		LastRetention:       s.retention,
	}
	if s.latestErr != nil && s.success == nil {
		// Not "no backup yet": a stale last success (the overdue clock
		// counts from start-up without it) or a failure may be in there.
		h.Warnings = append(slices.Clip(h.Warnings), "the newest backups in storage could not be read, so the last backup is unknown: "+s.latestErr.Error())
	}
	h.Status, h.Reason = s.evaluate(now)
	if s.sched != nil {
		h.TimeZone = s.sched.Location().String()
		if next := s.sched.Next(now); !next.IsZero() {
			v := next.Format(time.RFC3339)
			h.NextRun = &v
		}
	}
	if s.running != nil {
		r := *s.running
		r.Bytes = bytes
		h.Running = &r
	}
	return h
}

// healthy reports whether /healthz answers 200 at now.
func (s *state) healthy(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	status, _ := s.evaluate(now)
	return status == StatusOK
}

// serveHealth is GET /healthz: 200 when ok, else 503, with the JSON body.
// serveLive is /livez, for a liveness probe: 200 while the daemon works,
// whether or not its backups succeed (/healthz says that). Restarting a
// daemon because the database is down would only kill its retries.
func (d *Daemon) serveLive(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	inRun := d.active > 0
	d.mu.Unlock()
	ok, reason := d.state.alive(d.now(), inRun)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := map[string]string{"status": "alive"}
	code := http.StatusOK
	if !ok {
		body, code = map[string]string{"status": "stuck", "reason": reason}, http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(body)
	}
}

func (d *Daemon) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := d.state.snapshot(d.now(), d.progress.Load())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	code := http.StatusOK
	if h.Status != StatusOK {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(h)
}
