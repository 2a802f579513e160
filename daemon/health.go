package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

// Health statuses in /healthz.
const (
	StatusOK      = "ok"      // the last backup succeeded, or none is due yet
	StatusFailing = "failing" // the last backup failed
	StatusOverdue = "overdue" // no backup succeeded within the interval plus the grace
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

// Health is the /healthz body. Nothing in it is secret: no URLs, no
// connection strings; errors come redacted from the capture.
type Health struct {
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	Schedule    string    `json:"schedule"`
	TimeZone    string    `json:"time_zone,omitempty"`
	NextRun     *string   `json:"next_run"` // RFC 3339 in the schedule's zone
	Running     *Running  `json:"running,omitempty"`
	LastSuccess *Success  `json:"last_success"`
	LastFailure *Failure  `json:"last_failure"`
	LastSkip    *Skip     `json:"last_skipped,omitempty"`
	Warnings    []string  `json:"warnings,omitempty"`
	Started     time.Time `json:"started_at"`
	Version     string    `json:"version,omitempty"`
}

// state is what the daemon knows about its backups. Every read and write
// goes through its mutex; the clock is passed in, so tests drive it.
type state struct {
	mu       sync.Mutex
	sched    *schedule.Schedule
	grace    time.Duration
	start    time.Time
	version  string
	success  *Success
	failure  *Failure
	skip     *Skip
	running  *Running
	warnings []string // from the last success: the size guard's, for one
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
	return true
}

func (s *state) failed(f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = f
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
//   - the newest outcome is a failure: failing;
//   - no success within the schedule's interval plus the grace, counted
//     from the later of start-up and the last success: overdue. A daemon
//     that just started gets a whole interval before it is judged, so a
//     restart does not turn a stale storage into a restart loop;
//   - otherwise ok.
func (s *state) evaluate(now time.Time) (status, reason string) {
	if s.sched == nil {
		return StatusOK, "no schedule (PGBACKUPS_SCHEDULE is unset): no backups are run"
	}
	if f := s.failure; f != nil && (s.success == nil || f.At.After(s.success.FinishedAt)) {
		return StatusFailing, "the last backup failed"
	}
	ref := s.start
	if s.success != nil && s.success.FinishedAt.After(ref) {
		ref = s.success.FinishedAt
	}
	window := s.sched.Interval() + s.grace
	if now.Sub(ref) > window {
		since := "start-up at " + s.start.UTC().Format(time.RFC3339)
		if s.success != nil {
			since = "the last success at " + s.success.FinishedAt.UTC().Format(time.RFC3339)
		}
		return StatusOverdue, fmt.Sprintf("no backup succeeded in %s since %s (the schedule's longest gap %s plus PGBACKUPS_HEALTH_GRACE %s)",
			now.Sub(ref).Round(time.Second), since, s.sched.Interval(), s.grace)
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
