package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/sdnotify"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
)

// outcome is how one backup attempt ended.
type outcome struct {
	result   string // resultSuccess, resultFailure or resultSkipped
	man      storage.Manifest
	err      error
	started  time.Time
	finished time.Time
}

// scheduled is the gocron task: one scheduled run, retries included. stop
// ends with the daemon (no more retries); backups run on bctx, which
// outlives stop by ShutdownGrace.
func (d *Daemon) scheduled(stop, bctx context.Context) {
	if !d.enter() {
		return
	}
	defer d.leave()
	d.mu.Lock()
	due, ranLate := d.nextRun, d.ranLate
	d.ranLate = false
	d.mu.Unlock()
	if ranLate && d.now().Before(due) {
		// gocron's own start of the run this job already ran late (see
		// below), its timer having fired after the job ended.
		d.log.Debug("the scheduler started a run already run late; nothing to do", "next_run", due.Format(time.RFC3339))
		return
	}
	if !d.waitForDue(stop) {
		return
	}
	defer func() { d.state.ranUntil(d.now()) }()
	for {
		tick := d.now()
		d.state.ticked(tick)
		d.mu.Lock()
		expected := d.nextRun
		d.nextRun = d.opts.Schedule.Next(tick)
		d.mu.Unlock()
		d.warnLate(expected, tick)
		if !d.runScheduled(stop, bctx, tick) || stop.Err() != nil {
			return
		}
		// The next run came due while this one waited (to retry, or
		// watching storage), which ends before the next run by the wall
		// clock: the host slept, or the clock jumped, past it. gocron,
		// in singleton mode, dropped that run if its timer fired while
		// this job still ran; run it now, and let a later start of it
		// by gocron go (ranLate).
		d.mu.Lock()
		d.ranLate = true
		d.mu.Unlock()
		d.log.Warn("the next scheduled run came due while this run waited: the host slept, or the clock jumped; running it now")
	}
}

// warnLate says so when a run started at tick, expected at expected
// (zero: no expectation), is late, or runs before it were dropped.
func (d *Daemon) warnLate(expected, tick time.Time) {
	// Singleton mode drops runs that come while the previous one is still
	// going: say so, they are backups that did not happen.
	if expected.IsZero() || tick.Sub(expected) <= time.Second {
		return
	}
	// This run is late (the process was paused, the clock jumped, the
	// host starved it), or runs before it were dropped (the previous run
	// went on past them, or the process was paused across them).
	due := lastRun(d.opts.Schedule, tick)
	if due.After(expected) {
		d.log.Warn("scheduled runs were missed: the previous run was still going, or the process was paused",
			"first_missed", expected.Format(time.RFC3339), "now_running", due.Format(time.RFC3339))
	}
	if late := tick.Sub(due); !due.IsZero() && late > time.Second {
		d.log.Warn("scheduled run started late: the process was paused, or the clock jumped",
			"due", due.Format(time.RFC3339), "late_by", late.Round(time.Second).String())
	}
}

// waitForDue holds a run gocron started before its time on the wall clock
// until that time. The scheduler's timers fire by the wall clock
// (schedule.WallClock), so this is a guard should one not: a run started
// early by a clock set back would carry a time before the schedule's, and
// /healthz would then wait for a run gocron had already served, saying
// overdue until the day after. False when stop ends first.
func (d *Daemon) waitForDue(stop context.Context) bool {
	d.mu.Lock()
	due := d.nextRun // zero for the run runMissed started
	d.mu.Unlock()
	for logged := false; !due.IsZero(); logged = true {
		// Any amount early: a tick before its time would plan this very
		// time as the next run, and judge this one by the run before it.
		early := due.Sub(d.now())
		if early <= 0 {
			break
		}
		if !logged {
			d.log.Warn("scheduled run started early: the clock was set back since it was planned; waiting for its time",
				"due", due.Format(time.RFC3339), "early_by", early.Round(time.Millisecond).String())
		}
		// A minute at most: the clock may be set again meanwhile.
		if !sleep(stop, min(early, time.Minute)) {
			return false
		}
	}
	return true
}

// runScheduled backs up, retrying failures with a doubling pause while
// Retry allows and the retry would finish before the next scheduled run.
// It reports whether the next run's time passed while it waited (a pause
// before a retry, a watch of storage), which it ends before that time on
// the wall clock: only a host asleep or a clock jump makes that true.
func (d *Daemon) runScheduled(stop, bctx context.Context, tick time.Time) (nextDue bool) {
	next := d.opts.Schedule.Next(tick)
	// Whether the next run's time came during a wait that began at began.
	// Not one an attempt overran: a backup that runs into the next run
	// drops it, as gocron does, rather than start another at once.
	passedWaiting := func(began time.Time) bool {
		return !next.IsZero() && began.Before(next) && !d.now().Before(next)
	}
	pause := d.opts.Retry.Backoff
	// Set once the run was skipped here or failed here: another replica
	// may have backed it up since (a follower takes over a lock this daemon
	// let go of while it waits to retry), so storage is looked at under
	// the lock before backing up again. Set from the start for a run that
	// starts late (the one due while the daemon was starting): another
	// replica may have taken it meanwhile.
	var since time.Time
	if due := lastRun(d.opts.Schedule, tick); !due.IsZero() && tick.Sub(due) > time.Second {
		since = due
	}
	for attempt := 1; ; attempt++ {
		o := d.attempt(bctx, attempt, since)
		switch o.result {
		case resultFollowed:
			return false
		case resultSuccess:
			d.sdnotify(sdnotify.Status(fmt.Sprintf("last backup %s ok; next %s", o.man.ID, next.Format(time.RFC3339))))
			return false
		case resultSkipped:
			waiting := d.now()
			wctx, cancel := d.beforeNext(stop, bctx, next)
			again := d.followOther(wctx, tick, next)
			cancel()
			if !again || stop.Err() != nil {
				return passedWaiting(waiting)
			}
			// The holder let go without a backup (it was a prune, or its
			// backup failed): this run is still owed. A skip is not a
			// failed attempt, so the retry budget is untouched.
			attempt--
			since = tick
			continue
		}
		since = tick
		retryAt, giveUp := d.retryPlan(attempt, tick, next, pause, o.finished.Sub(o.started))
		if stop.Err() != nil {
			giveUp = "the daemon is stopping"
		}
		ev := d.event(EventFailed, o, attempt)
		if giveUp == "" {
			ev.WillRetry, ev.NextAttemptAt = true, &retryAt
			d.log.Warn("backup failed; retrying", backupAttr(o.man.ID), "attempt", attempt, "err", o.err.Error(),
				"retry_in_seconds", pause.Seconds(), "retry_at", retryAt.Format(time.RFC3339))
		} else {
			// A backup aborted because the daemon was told to stop is the
			// operator's doing: WARN, not a page.
			level, args := slog.LevelError, []any{"next_run", next.Format(time.RFC3339)}
			if stop.Err() != nil {
				level, args = slog.LevelWarn, nil // no next run here
			}
			d.log.Log(stop, level, "backup failed", append([]any{backupAttr(o.man.ID), "attempt", attempt, "err", o.err.Error(),
				"not_retried", giveUp}, args...)...)
			d.sdnotify(sdnotify.Status("last backup failed; next " + next.Format(time.RFC3339)))
		}
		d.webhook.post(ev)
		waiting := d.now()
		if giveUp != "" {
			if stop.Err() == nil {
				wctx, cancel := d.beforeNext(stop, bctx, next)
				d.watchStored(wctx, tick, next)
				cancel()
			}
			return passedWaiting(waiting)
		}
		wctx, cancel := d.until(stop, bctx, next)
		rested := sleep(wctx, pause)
		cancel()
		if !rested {
			if stop.Err() == nil {
				// retryPlan let the retry finish before the next run, so
				// only a host asleep or a clock jump ends the pause here.
				d.log.Warn("backup not retried: the next scheduled run is due; the host slept, or the clock jumped, during the pause",
					backupAttr(o.man.ID), "next_run", next.Format(time.RFC3339))
			}
			return passedWaiting(waiting)
		}
		pause *= 2
	}
}

// retryPlan says when the retry after a failed attempt would start, or why
// there is none. took is how long the failed attempt ran: with the last
// success's duration, it estimates how long the retry would.
func (d *Daemon) retryPlan(attempt int, tick, next time.Time, pause, took time.Duration) (time.Time, string) {
	r := d.opts.Retry
	at := d.now().Add(pause)
	expect := took
	if s := d.state.lastSuccess(); s != nil {
		expect = max(expect, time.Duration(s.Duration*float64(time.Second)))
	}
	switch {
	case attempt > r.Max:
		return time.Time{}, fmt.Sprintf("PGBACKUPS_RETRY_MAX=%d retries done", r.Max)
	case r.MaxTime > 0 && at.Sub(tick) > r.MaxTime:
		return time.Time{}, fmt.Sprintf("a retry at %s would start past PGBACKUPS_RETRY_MAX_TIME=%s", at.Format(time.RFC3339), r.MaxTime)
	case !next.IsZero() && !at.Add(expect).Before(next):
		return time.Time{}, fmt.Sprintf("a retry at %s, taking about %s, would run into the next scheduled run", at.Format(time.RFC3339), expect.Round(time.Second))
	}
	return at, ""
}

// attempt takes the lock, backs up, and applies retention. A run whose lock
// another process holds is skipped, not failed. With since set (the run was
// skipped before and the lock has come free, or an attempt here failed),
// storage is looked at once more under the lock: a backup another process
// stored after since (the holder, listed between the follower's last look
// and its release; or a follower that took over while this daemon waited
// to retry) is this run's.
func (d *Daemon) attempt(ctx context.Context, n int, since time.Time) outcome {
	o := outcome{started: d.now()}
	log := d.log.With("attempt", n)
	if d.opts.Lock != nil {
		locked, release, err := d.opts.Lock.Hold(ctx)
		var held *HeldError
		if errors.As(err, &held) {
			log.Info("backup skipped", "reason", held.Error())
			d.metrics.backups.WithLabelValues(resultSkipped).Inc()
			d.state.skipped(&Skip{At: o.started, Reason: held.Error()})
			o.result, o.finished = resultSkipped, d.now()
			return o
		}
		if err != nil {
			return d.failed(ctx, o, n, err)
		}
		defer release()
		ctx = locked
		if !since.IsZero() && d.holderStored(ctx, since) {
			o.result, o.finished = resultFollowed, d.now()
			return o
		}
	}

	d.pinger.ping("start", "start")
	d.progress.Store(0)
	d.state.begin(o.started, n)
	d.metrics.inProgress.Set(1)
	var id atomic.Pointer[string]
	stopProgress := d.logProgress(log, &id)
	man, err := d.opts.Capture(context.WithValue(ctx, attemptKey{}, attemptInfo{n: n, id: &id}), &d.progress)
	stopProgress()
	d.metrics.inProgress.Set(0)
	d.state.end()
	d.progress.Store(0)
	if err != nil {
		o.man = man // the failed manifest's id, for the log line (zero when none was assigned)
		return d.failed(ctx, o, n, err)
	}

	o.result, o.man, o.finished = resultSuccess, man, d.now()
	d.metrics.backups.WithLabelValues(resultSuccess).Inc()
	d.recordSuccess(man, "this daemon")
	log.Info("backup completed", "backup", man.ID, "database", man.Database,
		"dump_bytes", man.DumpBytes, "stored_bytes", man.StoredBytes,
		"duration_seconds", man.Duration().Round(time.Millisecond).Seconds(),
		"rate_bytes_per_second", rate(man.DumpBytes, man.Duration()))
	d.pinger.ping("", "success")
	d.webhook.post(d.event(EventSucceeded, o, n))

	// Retention runs after the new backup is listed and before the lock is
	// released, so no backup of this database runs meanwhile, here or in
	// another replica.
	d.retention(ctx, log)
	return o
}

// failed records a failed attempt in health, metrics and the ping check.
func (d *Daemon) failed(ctx context.Context, o outcome, n int, err error) outcome {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%v)", err, cause)
	}
	o.result, o.err, o.finished = resultFailure, err, d.now()
	var blocking *dump.BlockingError
	f := &Failure{At: o.finished, Error: err.Error(), Attempt: n, Blocking: errors.As(err, &blocking)}
	d.state.failed(f)
	d.metrics.backups.WithLabelValues(resultFailure).Inc()
	d.metrics.lastFailure.Set(float64(o.finished.UnixNano()) / 1e9)
	if f.Blocking {
		d.metrics.blockingAborts.Inc()
	}
	d.pinger.ping("fail", "fail")
	return o
}

// recordSuccess makes m the last success unless a newer one is known.
func (d *Daemon) recordSuccess(m storage.Manifest, by string) {
	s := successOf(m, by)
	if w := encryptionDrift(m, d.opts.EncryptsTo); w != "" {
		s.Warnings = append(slices.Clip(s.Warnings), w)
		d.log.Warn(w, "backup", m.ID, "by", by)
	}
	if d.state.succeeded(s) {
		d.metrics.success(s, m.DatabaseBytes, dump.OverLogicalLimit(m.DatabaseBytes, d.opts.LogicalLimit))
	}
}

// encryptionDrift says how backup m's encryption differs from a daemon's
// that encrypts to keys (none: it does not encrypt), or "".
func encryptionDrift(m storage.Manifest, keys []string) string {
	switch {
	case len(keys) == 0:
		return ""
	case m.Encryption == "":
		return "the last backup, " + m.ID + ", is not encrypted, though this daemon encrypts (PGBACKUPS_AGE_RECIPIENTS): it was taken before that was set, or by a replica or a pgbackups without it"
	case !sameKeys(m.EncryptedTo, keys):
		return "the last backup, " + m.ID + ", is encrypted to other age keys than this daemon's PGBACKUPS_AGE_RECIPIENTS: it was taken before a key change, or by a replica configured otherwise"
	}
	return ""
}

// sameKeys reports whether a and b hold the same keys, in any order.
func sameKeys(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func (d *Daemon) retention(ctx context.Context, log *slog.Logger) {
	if d.opts.Prune == nil {
		return
	}
	if t := d.opts.RetentionTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, t, fmt.Errorf("retention took longer than %s (PGBACKUPS_STALL_TIMEOUT): a storage endpoint that stopped answering?", t))
		defer cancel()
	}
	n, alone, err := d.opts.Prune(ctx)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w (%v)", cause, err)
	}
	d.metrics.retentionDeleted.Add(float64(n))
	if err == nil || alone > 0 {
		d.metrics.leftAlone.Set(float64(alone))
	}
	if err != nil {
		d.metrics.retentionErrors.Inc()
		log.Warn("retention incomplete; the next backup retries it", "removed", n, "err", err)
	}
}

// nextRunMargin is how long before the next scheduled run a watch inside
// a run's job ends (see beforeNext).
const nextRunMargin = 2 * time.Second

// beforeNext is the context of a watch that runs inside a scheduled run's
// job (followOther, watchStored). It ends nextRunMargin before the next
// run: in singleton mode gocron drops a run that comes while the job is
// still running, and a storage read (up to latestTimeout) begun just
// before would hold the job past it. It also ends with bctx, which the
// daemon cancels to stop backups, so a watch never holds up shutdown.
func (d *Daemon) beforeNext(stop, bctx context.Context, next time.Time) (context.Context, context.CancelFunc) {
	if next.IsZero() {
		return d.until(stop, bctx, next)
	}
	return d.until(stop, bctx, next.Add(-nextRunMargin))
}

// until is a context that ends at the time at on the daemon's clock (never,
// for a zero at), with stop, or with bctx. It ends by the wall clock, as
// the scheduler's timers: a host asleep or a clock set forward past at
// ends it within a poll, not after the time it still had to count on the
// monotonic clock (gocron would drop the next run, this job still running).
func (d *Daemon) until(stop, bctx context.Context, at time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(stop)
	unhook := context.AfterFunc(bctx, cancel)
	if at.IsZero() {
		return ctx, func() { unhook(); cancel() }
	}
	t := d.wall().AfterFunc(at.Sub(d.now()), cancel)
	return ctx, func() { t.Stop(); unhook(); cancel() }
}

// followEvery is how often a watch after a skipped or given-up run looks
// at storage: FollowInterval, or a quarter of the schedule's interval when
// that is shorter, at least a second. A schedule of a minute or less left
// no room for a 30 s look before the next run: a replica that lost the
// lock never saw the other's backup and stayed "failing".
func (d *Daemon) followEvery() time.Duration {
	every := d.opts.FollowInterval
	if iv := d.opts.Schedule.Interval(); iv > 0 {
		every = min(every, max(iv/4, time.Second))
	}
	return every
}

// followOther runs after a run was skipped because another process held
// the lock: it watches storage for that process's backup, so this daemon's
// /healthz reports it rather than going overdue. It reports true when the
// lock came free with no newer backup in storage (the holder was a prune,
// or its backup failed and it is not retrying yet): the run should be
// attempted again. It gives up, reporting false, once the holder's backup
// is seen, before the next scheduled run, or when the daemon stops.
func (d *Daemon) followOther(stop context.Context, tick, next time.Time) (again bool) {
	every := d.followEvery()
	for {
		if !next.IsZero() && !d.now().Add(every).Before(next) {
			return false
		}
		if !sleep(stop, every) {
			return false
		}
		if d.holderStored(stop, tick) {
			return false
		}
		if d.lockFree(stop) {
			if s := d.state.lastSuccess(); s != nil && !next.IsZero() && !d.now().Add(time.Duration(s.Duration*float64(time.Second))).Before(next) {
				d.log.Warn("the lock holder let go of the lock without a newer backup, too late for this run: a backup taking as long as the last would run into the next scheduled run",
					"next_run", next.Format(time.RFC3339))
				return false
			}
			d.log.Info("the lock holder let go of the lock without a newer backup in storage; backing up now")
			return true
		}
	}
}

// watchStored runs after this daemon gave up on a run: another replica
// may still take it (it follows the lock this one let go of, and backs up
// once it is free), and its backup, once listed, is this daemon's last
// success; without this, /healthz here says "failing" until the next
// scheduled run. It looks at storage every FollowInterval until the next
// run, a backup newer than the run's time is seen, or the daemon stops.
func (d *Daemon) watchStored(stop context.Context, tick, next time.Time) {
	if d.opts.Latest == nil {
		return // nothing to look at
	}
	every := d.followEvery()
	for !next.IsZero() && d.now().Add(every).Before(next) {
		if !sleep(stop, every) || d.holderStored(stop, tick) {
			return
		}
	}
}

// holderStored reports whether storage holds a backup another process
// finished for the run at since, while this one skipped it or waited to
// retry it; it becomes the last success.
func (d *Daemon) holderStored(ctx context.Context, since time.Time) bool {
	if d.opts.Latest == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, latestTimeout)
	defer cancel()
	m, _, err := d.opts.Latest(ctx)
	if err != nil || !m.FinishedAt.After(since) {
		return false
	}
	// Not the run before's, which overran into this one (its daemon then
	// skipped this run). One started later (a manual capture just before
	// this run) counts.
	if overran(d.opts.Schedule, m.StartedAt, since) {
		return false
	}
	d.recordSuccess(m, "storage")
	d.log.Info("the lock holder completed a backup", "backup", m.ID)
	return true
}

// overran reports whether a backup started at started is the run before's,
// overrunning into the run at (or a moment after) at: it started in the
// first half of the time from the run before to this one. The follower
// judges a holder's backup by it, and /healthz which run a success covers.
// The run before is read off the schedule: Interval adds the zone's
// fall-back (an hourly run in a DST zone has 2h) and is the longest gap,
// not this one (23h for "02:00,03:00 UTC" at 03:00), so half of it can
// reach back past the run before's start.
func overran(s *schedule.Schedule, started, at time.Time) bool {
	prev := runBefore(s, at)
	return !prev.IsZero() && started.Before(prev.Add(at.Sub(prev)/2))
}

// runBefore returns the scheduled run before the one a run started at since
// is for: gocron starts a run a moment after its time, so that run is the
// last one at or before since.
func runBefore(s *schedule.Schedule, since time.Time) time.Time {
	cur := lastRun(s, since)
	if cur.IsZero() {
		cur = since
	}
	prev := lastRun(s, cur.Add(-time.Nanosecond))
	if prev.IsZero() && s.Interval() > 0 {
		prev = since.Add(-s.Interval()) // none found: the longest gap bounds it
	}
	return prev
}

// lastRun returns s's last run at or before t, or the zero Time if none is
// within s.Interval() of it. Interval bounds the time between two runs, so
// stepping Next from that far back meets the run.
func lastRun(s *schedule.Schedule, t time.Time) time.Time {
	var last time.Time
	for at := s.Next(t.Add(-s.Interval() - time.Second)); !at.IsZero() && !at.After(t); at = s.Next(at) {
		last = at
	}
	return last
}

// lockFree reports whether the backup lock is free now: looked up where the
// Locker can, else taken and released again at once.
func (d *Daemon) lockFree(ctx context.Context) bool {
	if d.opts.Lock == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, latestTimeout)
	defer cancel()
	if p, ok := d.opts.Lock.(lockProber); ok {
		free, err := p.Free(ctx)
		return err == nil && free
	}
	_, release, err := d.opts.Lock.Hold(ctx)
	if err != nil {
		return false // still held, or the database is unreachable: keep following
	}
	release()
	return true
}

// logProgress logs the running backup's bytes and rate every
// ProgressInterval until the returned function is called.
func (d *Daemon) logProgress(log *slog.Logger, id *atomic.Pointer[string]) (stop func()) {
	every := d.opts.ProgressInterval
	if every < 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		start, last, lastAt := time.Now(), int64(0), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := d.progress.Load()
				var backup string
				if p := id.Load(); p != nil {
					backup = *p
				}
				log.Info("backup in progress", backupAttr(backup), "dump_bytes", n,
					"elapsed_seconds", now.Sub(start).Round(time.Second).Seconds(),
					"rate_bytes_per_second", rate(n-last, now.Sub(lastAt)),
					"average_bytes_per_second", rate(n, now.Sub(start)))
				last, lastAt = n, now
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// attemptKey carries a run's attempt to the capture (see Attempt).
type attemptKey struct{}

// attemptInfo is what the daemon tells a capture about its attempt.
type attemptInfo struct {
	n  int
	id *atomic.Pointer[string] // set by Began: the backup's id
}

// Attempt returns the number of the attempt a capture runs for (0 outside
// the daemon), for the capture's log lines, and a func to tell the daemon
// the backup's id once it has one, for the daemon's own (progress).
func Attempt(ctx context.Context) (n int, began func(id string)) {
	a, ok := ctx.Value(attemptKey{}).(attemptInfo)
	if !ok {
		return 0, func(string) {}
	}
	return a.n, func(id string) { a.id.Store(&id) }
}

// backupAttr is the backup id attribute, or nothing (slog drops an empty
// Attr) when the attempt failed before an id was assigned.
func backupAttr(id string) slog.Attr {
	if id == "" {
		return slog.Attr{}
	}
	return slog.String("backup", id)
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// sleep waits for d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (d *Daemon) event(name string, o outcome, attempt int) Event {
	ev := Event{
		Event:      name,
		StartedAt:  o.started.UTC(),
		FinishedAt: o.finished.UTC(),
		Attempt:    attempt,
		Hostname:   d.hostname,
		Schedule:   d.opts.Schedule.String(),
		Version:    d.opts.Version,
	}
	ev.DurationSeconds = ev.FinishedAt.Sub(ev.StartedAt).Seconds()
	if o.err != nil {
		ev.Error = o.err.Error()
		// The failed backup's id, when it got one: its failed manifest
		// (pgbackups info) holds the rest.
		ev.BackupID, ev.Database = o.man.ID, o.man.Database
	}
	if o.result == resultSuccess {
		m := o.man
		ev.BackupID, ev.Database = m.ID, m.Database
		ev.StartedAt, ev.FinishedAt, ev.DurationSeconds = m.StartedAt, m.FinishedAt, m.Duration().Seconds()
		ev.DumpBytes, ev.StoredBytes, ev.Warnings = m.DumpBytes, m.StoredBytes, m.Warnings
	}
	return ev
}
