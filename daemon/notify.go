package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Event is the JSON body POSTed to PGBACKUPS_WEBHOOK_URL after each backup
// attempt. Field names are a stable API.
type Event struct {
	Event           string     `json:"event"` // backup.succeeded or backup.failed
	BackupID        string     `json:"backup_id,omitempty"`
	Database        string     `json:"database,omitempty"`
	StartedAt       time.Time  `json:"started_at"`
	FinishedAt      time.Time  `json:"finished_at"`
	DurationSeconds float64    `json:"duration_seconds"`
	DumpBytes       int64      `json:"dump_bytes,omitempty"`
	StoredBytes     int64      `json:"stored_bytes,omitempty"`
	Error           string     `json:"error,omitempty"`
	Attempt         int        `json:"attempt"`
	WillRetry       bool       `json:"will_retry"`
	NextAttemptAt   *time.Time `json:"next_attempt_at,omitempty"`
	Warnings        []string   `json:"warnings,omitempty"`
	Hostname        string     `json:"hostname,omitempty"` // which replica of the daemon
	Schedule        string     `json:"schedule,omitempty"`
	Version         string     `json:"version,omitempty"`
}

// Event names.
const (
	EventSucceeded = "backup.succeeded"
	EventFailed    = "backup.failed"
)

// Delivery limits: a dead endpoint costs at most tries x timeout plus the
// pauses, and only to the sender's own goroutine, never to the backup.
const (
	notifyTries   = 3
	notifyTimeout = 10 * time.Second
	notifyPause   = 2 * time.Second // doubles after each try
	notifyQueue   = 32
)

// sender delivers requests to one endpoint, in order (a healthchecks.io
// "start" must not overtake the "success" that follows it), from one
// goroutine that Run starts and stops.
type sender struct {
	what   string // "webhook" or "ping", for logs
	host   string // the only part of the URL that is logged: it carries a token
	base   string
	client *http.Client
	log    *slog.Logger
	agent  string
	pause  time.Duration

	q    chan request
	once sync.Once
}

type request struct {
	method, url string
	body        []byte
	event       string // for logs
}

func newSender(what, rawURL string, client *http.Client, log *slog.Logger, agent string) *sender {
	if rawURL == "" {
		return nil
	}
	host := "(unparsable URL)"
	if u, err := url.Parse(rawURL); err == nil {
		host = u.Host
	}
	return &sender{
		what: what, host: host, base: rawURL, client: client, agent: agent, pause: notifyPause,
		log: log.With("component", what, "host", host),
		q:   make(chan request, notifyQueue),
	}
}

// send queues r without ever blocking the caller: when the endpoint is so
// slow that the queue is full, r is dropped and that is logged.
func (s *sender) send(r request) {
	if s == nil {
		return
	}
	select {
	case s.q <- r:
	default:
		s.log.Warn("notification dropped: the endpoint is not keeping up", "event", r.event)
	}
}

// run delivers queued requests until the queue is closed, or ctx ends.
func (s *sender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-s.q:
			if !ok {
				return
			}
			s.deliver(ctx, r)
		}
	}
}

// close stops accepting requests; run returns once the queue is drained.
func (s *sender) close() { s.once.Do(func() { close(s.q) }) }

func (s *sender) deliver(ctx context.Context, r request) {
	pause := s.pause
	var err error
	for try := 1; try <= notifyTries; try++ {
		var retry bool
		retry, err = s.do(ctx, r)
		if err == nil {
			s.log.Debug("notification sent", "event", r.event)
			return
		}
		if !retry || try == notifyTries {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			s.log.Warn("notification not sent: shutting down", "event", r.event, "err", err)
			return
		case <-t.C:
		}
		pause *= 2
	}
	s.log.Warn("notification not sent", "event", r.event, "err", err)
}

// do makes one request. Its errors never contain the URL.
func (s *sender) do(ctx context.Context, r request) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return false, fmt.Errorf("%s: bad URL", s.what)
	}
	req.Header.Set("User-Agent", s.agent)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, token and all: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, fmt.Errorf("%s %s %s: %w", s.what, r.method, s.host, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("%s %s %s: %s", s.what, r.method, s.host, resp.Status)
	}
	return false, fmt.Errorf("%s %s %s: %s", s.what, r.method, s.host, resp.Status)
}

// post queues ev as a JSON POST.
func (s *sender) post(ev Event) {
	if s == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		s.log.Warn("notification not sent", "event", ev.Event, "err", err)
		return
	}
	s.send(request{method: http.MethodPost, url: s.base, body: b, event: ev.Event})
}

// ping GETs the healthchecks.io-style URL, with "start" or "fail" appended
// to its path when suffix is not empty.
func (s *sender) ping(suffix, event string) {
	if s == nil {
		return
	}
	target := s.base
	if suffix != "" {
		if u, err := url.Parse(s.base); err == nil {
			target = u.JoinPath(suffix).String()
		}
	}
	s.send(request{method: http.MethodGet, url: target, event: event})
}
