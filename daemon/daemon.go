// Package daemon is the long-running pgbackups: backups on a schedule, one
// at a time even across replicas, retention after each success, retries
// that never run into the next scheduled run, webhook and ping
// notifications, /healthz and /metrics, and a shutdown that lets an
// in-flight backup finish or aborts it cleanly.
//
// It knows nothing of configuration: cmd_daemon.go builds its Options from
// the environment and hands it the capture, prune and lock functions.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/sdnotify"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

// Retry bounds how a failed scheduled backup is retried. A retry is never
// started when it would run into the next scheduled run.
type Retry struct {
	Max     int           // retries after the first attempt; 0 never retries
	Backoff time.Duration // the first pause; it doubles after each retry
	MaxTime time.Duration // no retry starts this long after the scheduled time; 0 is no limit
}

// Options is everything the daemon needs; New fills the optional parts.
type Options struct {
	// Schedule says when backups run; nil runs none (health is still served).
	Schedule *schedule.Schedule
	// Capture takes one backup, adding the uncompressed bytes it produces
	// to progress as it goes. It must leave nothing partial listed when ctx
	// is cancelled.
	Capture func(ctx context.Context, progress *atomic.Int64) (storage.Manifest, error)
	// Prune applies retention after each successful backup, while the lock
	// is still held; it returns how much it removed, and how many backups
	// it left alone without counting them as good (unreadable or damaged).
	// Nil: no retention.
	Prune func(ctx context.Context) (removed, leftAlone int, err error)
	// RetentionTimeout bounds Prune (PGBACKUPS_STALL_TIMEOUT): it runs
	// under the backup lock, and a storage endpoint that stops answering
	// must not hold the lock, and the run, for ever. 0: no bound.
	RetentionTimeout time.Duration
	// Latest returns the newest completed backup in storage, or an error
	// wrapping storage.ErrNoBackups, and the newest failed backup if one
	// came after it (storage.Catalog.Newest). The daemon reads it at
	// start-up, so a restart keeps the last success and a failure since,
	// and after a run it skipped, to see the backup the lock holder took.
	// Nil: neither.
	Latest func(ctx context.Context) (completed storage.Manifest, failedAfter *storage.Manifest, err error)
	// Lock keeps backups of one database from overlapping across
	// processes. Nil: only this process's own runs are serialized.
	Lock Locker

	Logger *slog.Logger
	// HTTPAddr is where /healthz and /metrics listen; "" or "off" is none.
	HTTPAddr string
	// ShutdownGrace is how long an in-flight backup may finish after the
	// context passed to Run ends; then it is cancelled. Default 30s.
	ShutdownGrace time.Duration
	Retry         Retry
	// WebhookURL receives a JSON Event after each attempt; PingURL is a
	// healthchecks.io-style check pinged at start, success and failure.
	// Neither is ever logged: only their hosts are.
	WebhookURL, PingURL string
	HTTPClient          *http.Client // for the two above; default has a timeout
	// HealthGrace is how long after the run due after the last success
	// (after start-up when none is known) /healthz waits for a success
	// before it reports overdue.
	HealthGrace time.Duration
	// LogicalLimit is PGBACKUPS_LOGICAL_LIMIT in bytes, for the
	// pgbackups_database_over_logical_limit gauge; 0 disables it.
	LogicalLimit int64
	// EncryptsTo lists the age public keys this daemon's backups are
	// encrypted to (PGBACKUPS_AGE_RECIPIENTS): a last success that is
	// not encrypted, or is to other keys (a replica or an older pgbackups
	// configured otherwise, a run before a key change), is warned of.
	EncryptsTo []string
	// Blocking and RateLimit, when set, are exported as gauges: how many
	// sessions the running dump blocks, and its current rate limit.
	Blocking  func() int
	RateLimit func() int64
	// Notify tells a service manager about start-up and shutdown:
	// sdnotify.Notify under systemd. Nil does nothing.
	Notify  func(states ...string) error
	Version string

	// ProgressInterval is how often a running backup logs its progress
	// (default 30s); FollowInterval how often, after a skipped run, storage
	// is checked for the lock holder's backup (default 30s).
	ProgressInterval time.Duration
	FollowInterval   time.Duration
	// Now is the clock the scheduler, health and retry decisions read;
	// default time.Now.
	Now func() time.Time
}

// Daemon runs backups on a schedule. Build it with New, run it once with Run.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	state    *state
	metrics  *metrics
	progress atomic.Int64 // the running backup's bytes so far
	webhook  *sender
	pinger   *sender
	hostname string
	wallPoll time.Duration // how often the scheduler's timers read the wall clock
	listen   func(network, addr string) (net.Listener, error)

	mu       sync.Mutex
	stopping bool           // no new backup starts
	inflight sync.WaitGroup // the scheduled run in progress, retries included
	active   int            // runs entered and not yet left (under mu): inflight's count
	nextRun  time.Time      // the run expected after the current one
	ranLate  bool           // the job ran nextRun's predecessor itself, late (see scheduled)
}

// New checks o and builds a Daemon.
func New(o Options) (*Daemon, error) {
	if o.Schedule != nil && o.Capture == nil {
		return nil, errors.New("daemon: a schedule needs a Capture function")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 30 * time.Second
	}
	if o.Retry.Backoff <= 0 {
		o.Retry.Backoff = time.Minute
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 30 * time.Second
	}
	if o.FollowInterval <= 0 {
		o.FollowInterval = 30 * time.Second
	}
	if o.HTTPClient == nil {
		// A transport of its own, not http.DefaultTransport: Run closes
		// its idle connections when it returns, which on the shared one
		// would close everyone's.
		var tr http.RoundTripper = http.DefaultTransport
		if t, ok := tr.(*http.Transport); ok {
			tr = t.Clone()
		}
		o.HTTPClient = &http.Client{Timeout: notifyTimeout, Transport: tr}
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	d := &Daemon{opts: o, log: o.Logger.With("component", "daemon"), now: o.Now, wallPoll: wallPoll, listen: net.Listen}
	d.hostname, _ = os.Hostname()
	d.state = newState(o.Schedule, o.HealthGrace, o.Now(), o.Version)
	d.metrics = newMetrics(d)
	agent := "pgbackups/" + o.Version
	d.webhook = newSender("webhook", o.WebhookURL, o.HTTPClient, o.Logger, agent)
	d.pinger = newSender("ping", o.PingURL, o.HTTPClient, o.Logger, agent)
	return d, nil
}

// Handler serves GET /healthz, GET /livez and GET /metrics.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.serveHealth)
	mux.HandleFunc("GET /livez", d.serveLive)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{
		Registry:          d.metrics.reg,
		EnableOpenMetrics: true,
	}))
	return mux
}

// Shutdown bounds for the parts that are not backups.
const (
	httpShutdownTimeout = 5 * time.Second
	notifyDrainTimeout  = 5 * time.Second
	latestTimeout       = 30 * time.Second
)

// Run serves and schedules until ctx ends, then shuts down: no new backup
// starts, an in-flight one gets ShutdownGrace to finish before it is
// cancelled, the HTTP server closes, and queued notifications get a few
// seconds. It returns nil after a shutdown by ctx; an error when the HTTP
// server cannot listen or stops.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.log
	var ln net.Listener
	if a := d.opts.HTTPAddr; a != "" && a != "off" {
		var err error
		if ln, err = d.listen("tcp", a); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}

	// Backups run on a context of their own: the signal that ends ctx stops
	// scheduling, and only ShutdownGrace later cancels the backup.
	backupCtx, cancelBackup := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelBackup(nil)
	// Scheduled runs stop on it (no more retries, no more waiting): ctx,
	// or the HTTP server failing, which does not end ctx.
	scheduling, stopScheduling := context.WithCancel(ctx)
	defer stopScheduling()
	var sched gocron.Scheduler
	var job gocron.Job
	if d.opts.Schedule != nil {
		var err error
		if sched, job, err = d.newScheduler(func() { d.scheduled(scheduling, backupCtx) }); err != nil {
			if ln != nil {
				ln.Close()
			}
			return err
		}
	}

	notifyCtx, cancelNotify := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelNotify()
	var notifiers sync.WaitGroup
	for _, s := range []*sender{d.webhook, d.pinger} {
		if s != nil {
			notifiers.Go(func() { s.run(notifyCtx) })
		}
	}

	srv := &http.Server{
		Handler:           d.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.opts.Logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	if ln != nil {
		go func() { serveErr <- srv.Serve(ln) }()
		log.Info("serving /healthz, /livez and /metrics", "addr", ln.Addr().String())
	} else {
		log.Info("PGBACKUPS_HTTP_ADDR is off: no /healthz or /metrics")
	}
	// Served meanwhile: /livez alive, /healthz "starting" (503).
	d.loadLatest(ctx)
	// Storage unreadable at start-up: read it again now and then, so the
	// last success (and the overdue clock) is known before the next
	// backup, which may be a day away.
	rctx, stopRereading := context.WithCancel(ctx)
	var rereading sync.WaitGroup
	defer func() { stopRereading(); rereading.Wait() }()
	if d.state.latestUnknown() {
		rereading.Go(func() { d.rereadLatest(rctx) })
	}

	if sched != nil {
		starting := d.now()
		// The first run gocron plans, for scheduled to judge it late by
		// (a host that slept through it, a clock set forward past it).
		d.mu.Lock()
		d.nextRun = d.opts.Schedule.Next(starting)
		d.mu.Unlock()
		sched.Start()
		d.state.scheduling(d.now())
		s := d.opts.Schedule
		next := s.Next(d.now())
		log.Info("daemon started", "schedule", s.String(), "time_zone", s.Location().String(),
			"next_run", next.Format(time.RFC3339), "interval", s.Interval().String(), "version", d.opts.Version)
		d.sdnotify(sdnotify.Ready, sdnotify.Status("next backup "+next.Format(time.RFC3339)))
		d.runMissed(ctx, job, starting)
	} else {
		log.Warn("daemon started without a schedule: PGBACKUPS_SCHEDULE is unset, so no backups will run; serving health only", "version", d.opts.Version)
		d.sdnotify(sdnotify.Ready, sdnotify.Status("no schedule: no backups run"))
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx).Error())
	case err := <-serveErr:
		runErr = fmt.Errorf("http: %w", err)
		log.Error("HTTP server stopped; shutting down", "err", err)
	}
	d.sdnotify(sdnotify.Stopping)

	stopScheduling()
	d.stopBackups(cancelBackup)
	if sched != nil {
		// No job runs now (stopBackups waited), so this returns at once.
		if err := sched.Shutdown(); err != nil {
			log.Warn("scheduler shutdown", "err", err)
		}
	}

	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	if err := srv.Shutdown(hctx); err != nil {
		srv.Close()
	}
	cancel()

	// Let queued notifications go out (the last backup's result matters
	// most), for a bounded time.
	for _, s := range []*sender{d.webhook, d.pinger} {
		if s != nil {
			s.close()
		}
	}
	drained := make(chan struct{})
	go func() { notifiers.Wait(); close(drained) }()
	t := time.NewTimer(notifyDrainTimeout)
	select {
	case <-drained:
	case <-t.C:
		log.Warn("notifications still pending at shutdown; dropping them")
		cancelNotify()
		<-drained
	}
	t.Stop()
	// The senders' keep-alive connections to the webhook and ping hosts
	// (a goroutine pair and a descriptor each) would otherwise outlive
	// Run for as long as the transport's idle timeout, or for ever where
	// the caller's transport has none.
	d.opts.HTTPClient.CloseIdleConnections()
	log.Info("stopped")
	return runErr
}

// wallPoll is how often the scheduler's timers, and the waits inside a
// run that must end before the next one, read the wall clock: the most a
// run starts late after the host slept or the clock jumped past it, and
// the time /livez may call the scheduler stuck meanwhile. A wake-up every
// 10 s costs nothing measurable.
const wallPoll = 10 * time.Second

// wall is the clock of the scheduler's timers (see schedule.WallClock).
func (d *Daemon) wall() clockwork.Clock { return schedule.WallClock(d.now, d.wallPoll) }

// newScheduler returns a scheduler, not yet started, that runs task at each
// of the schedule's times, and its one job. gocron's singleton mode skips a
// run while the previous one (retries included) is still going, instead of
// queueing it.
func (d *Daemon) newScheduler(task func()) (gocron.Scheduler, gocron.Job, error) {
	s := d.opts.Schedule
	sched, err := gocron.NewScheduler(
		// UTC, whatever the schedule's zone: see Schedule.Gocron (in the
		// schedule's zone gocron drops one run of `@every 1h` on the
		// fall-back night).
		gocron.WithLocation(time.UTC),
		// Runs start by the wall clock, not after a duration counted on
		// the monotonic one: a host that slept or a clock set forward past
		// a run starts it within wallPoll, not hours late (see
		// schedule.WallClock).
		gocron.WithClock(d.wall()),
		gocron.WithLogger(gocronLogger{d.opts.Logger.With("component", "gocron")}),
		gocron.WithStopTimeout(5*time.Second),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("scheduler: %w", err)
	}
	def, opt := s.Gocron()
	job, err := sched.NewJob(def, gocron.NewTask(task), opt,
		gocron.WithName("backup"),
		gocron.WithSingletonMode(gocron.LimitModeReschedule))
	if err != nil {
		sched.Shutdown()
		return nil, nil, fmt.Errorf("scheduler: %w", err)
	}
	return sched, job, nil
}

// runMissed runs now a scheduled run that came due while the daemon was
// starting (between New and the scheduler's start at starting, mostly
// reading storage, up to latestTimeout): gocron schedules only runs after
// its start, so that run would otherwise be lost without a word, leaving a
// daily schedule a day without a backup. It is late by seconds, and still
// the run a user asked for; job.RunNow keeps gocron's singleton mode, and
// the lock keeps it from overlapping another replica's. A run due during
// the Start call itself (microseconds) is not caught.
func (d *Daemon) runMissed(ctx context.Context, job gocron.Job, starting time.Time) {
	due := d.opts.Schedule.Next(d.state.startedAt())
	if due.IsZero() || due.After(starting) || ctx.Err() != nil {
		return
	}
	d.log.Warn("a scheduled run came due while the daemon was starting; running it now",
		"due", due.Format(time.RFC3339), "scheduler_started", starting.Format(time.RFC3339))
	// Not the run gocron planned (it waits for it) nor one late by a
	// pause or a clock step: scheduled judges it by nothing.
	d.mu.Lock()
	d.nextRun = time.Time{}
	d.mu.Unlock()
	if err := job.RunNow(); err != nil {
		d.log.Error("the scheduled run due while the daemon was starting could not be started; it is skipped",
			"due", due.Format(time.RFC3339), "err", err)
	}
}

// stopBackups keeps new backups from starting, gives the one in progress
// ShutdownGrace to finish, then cancels it and waits for it to clean up
// (the capture aborts its upload; nothing partial is listed).
func (d *Daemon) stopBackups(cancel context.CancelCauseFunc) {
	d.mu.Lock()
	d.stopping = true
	idle := d.active == 0
	d.mu.Unlock()
	if idle {
		return // and none can start now
	}
	done := make(chan struct{})
	go func() { d.inflight.Wait(); close(done) }()
	grace := d.opts.ShutdownGrace
	d.log.Info("waiting for the scheduled run in progress to finish", "shutdown_grace", grace.String())
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		d.log.Warn("backup still running after PGBACKUPS_SHUTDOWN_GRACE; aborting it", "shutdown_grace", grace.String())
		cancel(stoppedAtShutdown{grace})
		<-done
	}
}

// stoppedAtShutdown is the cause a backup still running after the
// shutdown grace is cancelled with: the operator's stop (dump.ErrStopped),
// which its failed manifest records.
type stoppedAtShutdown struct{ grace time.Duration }

func (e stoppedAtShutdown) Error() string {
	return fmt.Sprintf("stopped at shutdown: still running after PGBACKUPS_SHUTDOWN_GRACE=%s", e.grace)
}

func (e stoppedAtShutdown) Is(target error) bool { return target == dump.ErrStopped }

// enter registers a scheduled run, unless the daemon is stopping.
func (d *Daemon) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return false
	}
	d.inflight.Add(1)
	d.active++
	return true
}

// leave ends what enter began.
func (d *Daemon) leave() {
	d.mu.Lock()
	d.active--
	d.mu.Unlock()
	d.inflight.Done()
}

func (d *Daemon) sdnotify(states ...string) {
	if d.opts.Notify == nil {
		return
	}
	if err := d.opts.Notify(states...); err != nil {
		d.log.Warn("could not tell systemd the daemon's state (sd_notify)", "err", err)
	}
}

// loadLatest reads the newest completed backup from storage, and a failed
// one after it, so a restarted daemon reports the last outcome it did not
// see itself.
func (d *Daemon) loadLatest(ctx context.Context) {
	if d.opts.Latest == nil {
		return
	}
	d.state.setLoading(true)
	defer d.state.setLoading(false)
	d.readStored(ctx)
}

// readStored is loadLatest's read, also run again by rereadLatest. It
// reports whether storage could be read.
func (d *Daemon) readStored(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, latestTimeout)
	defer cancel()
	m, f, err := d.opts.Latest(ctx)
	var unread error
	if err != nil && !errors.Is(err, storage.ErrNoBackups) {
		unread = err
	}
	d.state.storageRead(unread)
	read := unread == nil
	switch {
	case errors.Is(err, storage.ErrNoBackups):
		d.log.Info("no completed backup in storage yet")
	case err != nil:
		d.log.Warn("newest backup in storage is unknown: storage could not be read; /healthz reports no last backup until it can (read again every minute)", "err", err)
	default:
		d.recordSuccess(m, "storage")
		d.log.Info("newest completed backup in storage", "backup", m.ID, "finished_at", m.FinishedAt.Format(time.RFC3339))
	}
	if f == nil {
		return read // none, or unknown: the success above stands
	}
	at := f.FinishedAt
	if at.IsZero() {
		at = f.StartedAt
	}
	if !d.state.failedInStorage(&Failure{At: at, Error: f.Error}) {
		return read
	}
	d.metrics.lastFailure.Set(float64(at.UnixNano()) / 1e9)
	d.log.Warn("the newest backup in storage failed; /healthz reports it until a backup succeeds", "backup", f.ID, "err", f.Error)
	return read
}

// latestRetryInterval is how often storage's newest backups are read again
// while start-up could not read them.
var latestRetryInterval = time.Minute

// rereadLatest reads storage's newest backups every latestRetryInterval
// until they are known: read, or overtaken by a backup of this daemon
// that succeeded. A failed one does not: storage's last success still
// counts for /healthz (and the failure may be storage's, still hung).
func (d *Daemon) rereadLatest(ctx context.Context) {
	t := time.NewTicker(latestRetryInterval)
	defer t.Stop()
	for d.state.latestUnknown() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.state.latestUnknown() {
			return
		}
		if d.readStored(ctx) {
			d.log.Info("storage answers again; the newest backups in it are known")
			return
		}
	}
}

// gocronLogger hands gocron's logs to slog, its start-up chatter at debug.
type gocronLogger struct{ l *slog.Logger }

var _ gocron.Logger = gocronLogger{}

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug(msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug(msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn(msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error(msg, args...) }
