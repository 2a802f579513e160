package dump

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pgbackups/pgbackups/config"
)

// Adaptive defaults; see Adaptive.
const (
	DefaultAdaptiveFloor      = 4 << 20   // 4 MiB/s: a 20 GB database still dumps in under 1.5 h
	DefaultAdaptiveStart      = 8 << 20   // 8 MiB/s, twice the floor: slow start from there
	DefaultAdaptiveBlind      = 64 << 20  // 64 MiB/s
	DefaultAdaptiveCeiling    = 256 << 20 // above 256 MiB/s the limit is lifted
	DefaultAdaptiveHeadroom   = 0.5
	DefaultAdaptiveBusy       = 0.5
	DefaultAdaptiveIdle       = 0.25
	DefaultAdaptiveBaseline   = 3 * time.Second
	DefaultAdaptiveRebaseline = 5 * time.Minute
	defaultAdaptiveEvery      = time.Second
	// Load samples per Interval (an Interval ends after these or its
	// length, whichever comes first). The count is small (a fraction of a
	// session on a lightly loaded database), so few samples are noise:
	// with four a second, bench/nostall.sh once measured a baseline of
	// 0.15 where other runs of the same workload measured 0.7, and
	// ordinary blips then held the dump near its floor for three times
	// pg_dump -Fc's duration; at ten a second the mean of one Interval
	// varied by 0.25-0.35 sessions on its own, as much as the dump moves
	// it. Each sample is one read of pg_stat_activity (shared memory, no
	// locks); at fifty a second they cost the server 1.5-1.8% of a core
	// (two runs of pgbench -M prepared, as pgx sends it, on an idle server
	// with max_connections 100: 0.3-0.36 ms of backend CPU a sample, where
	// SELECT 1 costs 0.15 ms; calling pg_stat_get_activity directly, without
	// the view's joins, measured no cheaper).
	adaptiveSamples = 50
	// Load samples per Interval while the baseline is measured (the dump
	// sits at its floor; the queries cost ~3-3.6% of a core for those seconds).
	// The baseline sets every threshold of the dump that follows, and a
	// low one holds the dump near its floor throughout: one capture
	// measured 0.39 against the usual 0.7 and took twice pg_dump -Fc's
	// time. Sampled at 30% of capacity (bench/nostall.sh's workload), a
	// three-second baseline taken at ten samples a second varied by 25%
	// (standard deviation) and fell below 0.7 times the true mean in 11% of
	// windows; at a hundred a second by 13%, and in none of ~480 overlapping
	// windows.
	adaptiveBaselineSamples = 100
	adaptiveLogEvery        = 10 * time.Second
	adaptiveRetryBaseline   = 10 // Intervals to wait before measuring again after a failed measurement
)

// Adaptive is PGBACKUPS_MAX_RATE=auto: a Monitor that moves Limiter's limit
// between Floor and unlimited as the application's load changes.
//
// The signal is the number of application sessions executing a statement
// right now (pg_stat_activity state 'active', client backends, not
// pgbackups' own), sampled fifty times per Interval and averaged: the
// database's "average active sessions", the load measure of Amazon RDS
// Performance Insights and Oracle ASH. It is the signal chosen because
//   - it needs no extension (pg_stat_statements) and no privilege beyond
//     pg_read_all_stats, and reads shared memory without locks;
//   - it covers every database of the cluster: the dump competes for the
//     server's CPUs, disks and buffer cache, not for one database's;
//   - by Little's law (active = throughput x latency) it rises both when the
//     application sends more work and when its work gets slower, which is
//     how contention with the dump shows; and it reacts within a second,
//     unlike commit counters, which backends flush at most once a second
//     and idle ones after up to ten.
//
// The load is judged against the application's own level, its baseline:
// for the first Baseline of the dump (after one Interval to settle) the
// limit sits at Floor and the mean of a hundred samples per Interval is
// taken; every Rebaseline it is taken again the same way, so a dump that
// runs for hours follows the day's load. With the baseline b, the dump
// is busy at a mean of b x (1 + Headroom) + Busy or more and idle at
// b x (1 + Headroom/2.5) + Idle or less. For a steady application
// (fixed throughput), Little's law makes the mean proportional to its
// latency: with the defaults and a large baseline, the dump slows down
// once statements take about 1.5 times as long as before it started;
// the Busy term makes small baselines more tolerant (about 1.8 times as
// long at 1.5 sessions). On an idle database (b = 0), half a statement in
// flight on average is busy.
//
// The thresholds were measured against bench/nostall.sh's 30% workload
// (pg_dump -Fc ~40-55 s), interleaving captures of each variant, four to
// six per variant per run, medians. With the baseline from ten samples a
// second Busy was 1 and Idle 0.5; from a hundred, the baseline stopped
// coming out low now and then (which had made the controller stricter
// than its numbers said) and the dump took 0.68-0.77x pg_dump -Fc's time
// at p99 3.1-4.8x the no-backup p99, so they became 0.75 and 0.375 (0.87x,
// 3.2x). 0.5 and 0.25 gave 2.7x then but held one capture at its floor
// for 110 s: with ten samples per Interval, noise alone crossed them.
// With fifty samples and the CUBIC recovery below, two runs: 0.5/0.25
// 42 s and 32 s median, the slowest 44.5 s, p99 26.0 ms in both (every
// capture's p99 22-29 ms); 0.75/0.375 with ten samples 35 s and 31 s,
// 31.3 and 31.4 ms (up to 57 ms); 0.5/0.25 with ten, one capture 75 s;
// 0.75/0.375 with fifty, 26.5 ms but one capture at 74 ms.
//
// When no sample of a measurement succeeds, the limit holds and the
// measurement is retried ten Intervals later.
//
// Control is TCP's: slow start, then AIMD. When busy, the limit becomes
// 0.7 times the rate the dump actually ran at over the last Interval (or
// the limit, if lower; never below Floor), because cutting a limit the
// dump does not reach (it is CPU-bound, or between tables) changes
// nothing. When idle, the limit grows, but only while the dump runs at
// three quarters of it or more, so it never drifts far above what the
// dump does (past Ceiling it is lifted): by half each Interval until the
// application has first been busy (slow start: an idle database gets its
// dump fast). After that, CUBIC's shape: only once the application has
// been idle for three Intervals in a row, and then back toward the rate
// of the last cut by half the gap each Interval (at least a sixteenth of
// the limit, at least Floor/4), and past it by one such step, then two,
// three..., never faster than slow start. So the dump spends its time near
// the rate the application last objected to, instead of overshooting it
// every few seconds, and a cut the dump did not cause (a spike at a rate
// too low to matter) costs seconds, not the dump's length: with a
// sixteenth per Interval, a busy second at the start rate left captures
// climbing back for most of the dump (1.2-1.8x pg_dump -Fc's time). In
// interleaved captures at bench/nostall.sh's 30% load (six each, one run)
// this took the median from 47 s to 38 s and the slowest from 57 s to
// 42 s (pg_dump -Fc ~50 s) at the same p99 (4.3x the no-backup p99 for
// both). In between idle and busy it holds, so the limit does not flap.
// The dump reaches Floor from unlimited in twelve Intervals; it climbs
// back in ten in slow start, and from a cut at the start rate to four
// times it in about a dozen.
//
// Limit changes are logged, at info level at most every ten seconds (the
// rest at debug), and Limiter.Limit reads the current one for metrics.
type Adaptive struct {
	Limiter    *Limiter
	Floor      int64         // bytes/s the dump never goes below; default 4 MiB/s
	Start      int64         // bytes/s after the first baseline, where slow start begins; default 8 MiB/s
	Blind      int64         // bytes/s while the load has never been measured (queries fail); default 64 MiB/s
	Ceiling    int64         // bytes/s above which the limit is lifted; default 256 MiB/s
	Headroom   float64       // how far over its baseline the application's load may rise; default 0.5
	Busy       float64       // active sessions over the scaled baseline at which the dump slows down; default 0.5
	Idle       float64       // active sessions over the scaled baseline at which it speeds up; default 0.25
	Baseline   time.Duration // how long the baseline is measured, at Floor; default 3s
	Rebaseline time.Duration // how often it is measured again; default 5m
	Interval   time.Duration // how often the limit may change; default 1s
	Logger     *slog.Logger

	// sample stands in for the load query in tests (nil: the query).
	sample func(context.Context) (int, error)
}

// withDefaults fills zero fields.
func (a Adaptive) withDefaults() Adaptive {
	if a.Floor <= 0 {
		a.Floor = DefaultAdaptiveFloor
	}
	if a.Ceiling <= 0 {
		a.Ceiling = DefaultAdaptiveCeiling
	}
	a.Ceiling = max(a.Ceiling, a.Floor)
	if a.Start <= 0 {
		a.Start = DefaultAdaptiveStart
	}
	a.Start = min(max(a.Start, a.Floor), a.Ceiling)
	if a.Blind <= 0 {
		a.Blind = DefaultAdaptiveBlind
	}
	a.Blind = min(max(a.Blind, a.Floor), a.Ceiling)
	if a.Headroom <= 0 {
		a.Headroom = DefaultAdaptiveHeadroom
	}
	if a.Busy <= 0 {
		a.Busy = DefaultAdaptiveBusy
	}
	if a.Idle <= 0 || a.Idle > a.Busy {
		a.Idle = min(DefaultAdaptiveIdle, a.Busy/2)
	}
	if a.Baseline <= 0 {
		a.Baseline = DefaultAdaptiveBaseline
	}
	if a.Rebaseline <= 0 {
		a.Rebaseline = DefaultAdaptiveRebaseline
	}
	if a.Interval <= 0 {
		a.Interval = defaultAdaptiveEvery
	}
	return a
}

// adaptiveBackoff is the limit's cut when busy, in tenths: CUBIC's 0.7
// rather than Reno's half, because the signal is noisy and the dump should
// hover near what the application tolerates, not fall far below it (at
// half, bench/nostall.sh measured the default dump slower than pg_dump -Fc).
const adaptiveBackoff = 7

// adaptiveCooldown is how many idle Intervals in a row, after the
// application was busy, the limit waits before it grows: latency lags the
// load that caused it, while queues drain.
const adaptiveCooldown = 3

// control is the controller's state: whether the application has been
// busy during this dump (slow start is over), and how many Intervals in a
// row it has been idle since.
type control struct {
	a         Adaptive
	congested bool
	quiet     int
	peak      int64 // the limit cut at the last busy Interval: CUBIC's W_max
	probe     int   // growth steps at or above peak since that cut
}

// next is the controller: the limit after cur (0 = unlimited) given the
// rate the dump ran at (bytes/s), the mean number of active application
// sessions and their baseline.
func (c *control) next(cur, rate int64, load, base float64) int64 {
	a := c.a
	switch {
	case load >= base*(1+a.Headroom)+a.Busy:
		c.congested, c.quiet = true, 0
		if cur == 0 {
			cur = a.Ceiling
		}
		if rate > 0 {
			cur = min(cur, rate)
		}
		c.peak, c.probe = cur, 0
		return max(cur*adaptiveBackoff/10, a.Floor)
	case load <= base*(1+a.Headroom/2.5)+a.Idle:
		c.quiet++
		if cur == 0 {
			return 0
		}
		if rate < cur-cur/4 {
			return cur // not reaching the limit: raising it would change nothing
		}
		n := cur + cur/2
		if c.congested {
			if c.quiet < adaptiveCooldown {
				return cur
			}
			step := max(cur/16, a.Floor/4)
			if cur < c.peak {
				// Back toward the rate of the last cut, halving the gap.
				n = min(cur+max((c.peak-cur)/2, step), c.peak)
			} else {
				// Past it, probe: one step, then two, three...,
				// never faster than slow start.
				c.probe++
				n = cur + min(step*int64(c.probe), cur/2)
			}
		}
		if n > a.Ceiling {
			return 0
		}
		return n
	}
	c.quiet = 0
	return cur
}

// loadQuery counts application statements in flight.
const loadQuery = `SELECT count(*) FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend'
	AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pgbackups%'`

// Watch is the Monitor. It measures the baseline at Floor when the dump
// begins, sets the Limiter to Start (to Blind if no sample succeeded), and
// adjusts it until ctx ends, then leaves it at Floor, where the next dump
// starts (the limit is a gauge between backups too). It never fails the
// backup: when the database cannot be queried, the limit holds.
func (a *Adaptive) Watch(ctx context.Context, r Running) error {
	c := a.withDefaults()
	defer c.Limiter.SetLimit(c.Floor)
	ctl := &control{a: c}
	log := r.logger(c.Logger, "adaptive_rate")
	obs := &observer{conn: r.Conn, log: log, what: "adaptive rate"}
	defer obs.close(ctx)
	sample := obs.load
	if c.sample != nil {
		sample = c.sample
	}

	tick := time.NewTicker(c.Interval / adaptiveSamples)
	defer tick.Stop()
	var (
		sum      float64
		n, taken int
		// The Limiter's byte count and the time at the start of the
		// current Interval: the rate the dump actually ran at.
		mark     int64
		markAt   time.Time
		lastInfo time.Time
		base     float64
		haveBase bool // a baseline was measured: until then the limit holds
		// While measuring the baseline: when it started, the samples
		// taken (after the first Interval, left to settle), and the limit
		// to go back to.
		measuring    bool
		measureStart time.Time
		measureSum   float64
		measureN     int
		resume       int64
		lastBaseline time.Time
	)
	window := func() {
		sum, n, taken = 0, 0, 0
		mark, markAt = c.Limiter.Total(), time.Now()
	}
	// measure starts a baseline measurement: the dump at its floor, the
	// load sampled adaptiveBaselineSamples times per Interval, then the
	// limit back to then.
	measure := func(then int64) {
		measuring, measureStart, measureSum, measureN, resume = true, time.Now(), 0, 0, then
		c.Limiter.SetLimit(c.Floor)
		tick.Reset(c.Interval / adaptiveBaselineSamples)
	}
	measure(c.Start)
	log.Debug("measuring the application's baseline load with the dump at its floor rate", "floor", rateString(c.Floor), "for", (c.Interval + c.Baseline).String())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// A sample may take at most an Interval: a hung query or connect
		// must not keep the dump at its floor while measuring.
		sctx, cancel := context.WithTimeout(ctx, c.Interval)
		active, err := sample(sctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errOldServer) {
			log.Warn("adaptive rate disabled: it needs PostgreSQL 10 or newer; the dump runs at a fixed limit", "limit", rateString(c.Blind))
			c.Limiter.SetLimit(c.Blind)
			<-ctx.Done()
			return nil
		}
		if measuring {
			since := time.Since(measureStart)
			if err == nil && since >= c.Interval {
				measureSum += float64(active)
				measureN++
			}
			if since < c.Interval+c.Baseline {
				continue
			}
			if measureN == 0 && !haveBase {
				// Never measured: slow start needs a baseline to judge
				// against, and the floor's neighbourhood would make a
				// big dump take hours; hold a moderate fixed limit.
				resume = c.Blind
			}
			c.Limiter.SetLimit(resume)
			tick.Reset(c.Interval / adaptiveSamples)
			measuring, lastBaseline = false, time.Now()
			window()
			if measureN == 0 {
				// No sample succeeded (the failure itself is logged by the
				// observer). Keep the previous baseline if there is one,
				// else hold the limit, and try again soon.
				lastBaseline = time.Now().Add(-c.Rebaseline + adaptiveRetryBaseline*c.Interval)
				log.Debug("application load not measured; trying again", "have_baseline", haveBase, "limit", rateString(resume))
				continue
			}
			level := slog.LevelDebug
			if !haveBase { // the first baseline
				level = slog.LevelInfo
			}
			base, haveBase = measureSum/float64(measureN), true
			log.Log(ctx, level, "application load measured with the dump at its floor rate", "active_sessions", base,
				"slows_down_at", base*(1+c.Headroom)+c.Busy, "samples", measureN, "resume_limit", rateString(resume))
			continue
		}
		if time.Since(lastBaseline) >= c.Rebaseline {
			measure(c.Limiter.Limit())
			continue
		}
		if !haveBase {
			continue // the limit holds until a baseline is measured
		}
		taken++
		if err == nil {
			sum += float64(active)
			n++
		}
		if taken < adaptiveSamples && time.Since(markAt) < c.Interval {
			continue // a slow database makes slow samples: the Interval still ends on time
		}
		mean := sum / float64(max(n, 1))
		ok := n > 0
		rate := int64(float64(c.Limiter.Total()-mark) / time.Since(markAt).Seconds())
		window()
		if !ok {
			continue
		}
		cur := c.Limiter.Limit()
		nxt := ctl.next(cur, rate, mean, base)
		if nxt == cur {
			continue
		}
		c.Limiter.SetLimit(nxt)
		level := slog.LevelDebug
		if time.Since(lastInfo) >= adaptiveLogEvery {
			level, lastInfo = slog.LevelInfo, time.Now()
		}
		log.Log(ctx, level, "dump rate limit changed", "from", rateString(cur), "to", rateString(nxt), "limit_bytes_per_second", nxt, "active_sessions", mean, "baseline", base, "dump_rate", rateString(rate))
	}
}

// load samples the number of active application sessions.
func (o *observer) load(ctx context.Context) (int, error) {
	c, err := o.get(ctx)
	if err != nil {
		return 0, err
	}
	var n int
	if err := c.QueryRow(ctx, loadQuery).Scan(&n); err != nil {
		return 0, o.fail(ctx, err)
	}
	o.ok()
	return n, nil
}

// rateString renders a limit for logs: "12.0 MiB/s" or "unlimited".
func rateString(bps int64) string {
	if bps <= 0 {
		return "unlimited"
	}
	return config.HumanBytes(bps) + "/s"
}
