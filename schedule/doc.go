// Package schedule turns PGBACKUPS_SCHEDULE into run times, and decides
// which backups a retention policy keeps. It is pure logic: no I/O, no
// goroutines, no clock of its own.
//
// # Schedule syntax
//
// Daily times, Heroku style: one or more HH:MM separated by commas, then an
// optional time zone (UTC when absent):
//
//	02:00 America/Los_Angeles
//	02:00 PDT                  (an abbreviation from Abbreviations)
//	2:30 UTC
//	02:00                      (UTC)
//	02:00,14:00 Europe/Berlin
//
// Cron, with an optional CRON_TZ= or TZ= prefix (UTC when absent):
//
//	0 */6 * * *                       minute hour day-of-month month day-of-week
//	*/5 * * * * *                     six fields: seconds first
//	CRON_TZ=Europe/Berlin 30 2 * * MON-FRI
//	@hourly @daily @midnight @weekly @monthly @yearly @annually
//	@every 1h30m                      fixed period, aligned to the Unix epoch
//
// Cron fields take numbers, ranges (1-5), steps (*/15, 1-30/2, 5/10 meaning
// 5-max/10), lists (1,15), names (JAN-DEC, SUN-SAT, any case) and ? for *.
// Day-of-week 7 is Sunday. When both day-of-month and day-of-week are
// restricted (neither is * or ?), a day matches if either matches, as in
// Vixie cron and robfig/cron. L, W and # are not supported.
//
// The empty spec means "no schedule": Parse returns (nil, nil), and a nil
// *Schedule's methods are safe to call (Next returns the zero Time).
//
// A time zone is an IANA name with a slash (America/Los_Angeles, Etc/GMT+5),
// UTC, or one of the abbreviations in Abbreviations. An abbreviation names
// the civil time of a place, with its daylight saving time: EST and EDT both
// mean America/New_York, never the fixed UTC-5 zone tzdata calls "EST"
// (write Etc/GMT+5 for that). Bare tzdata names without a slash (EST5EDT,
// CST6CDT, Local) are refused, because they are either ambiguous with the
// table or depend on the machine.
//
// # Daylight saving time
//
// A schedule is a set of wall-clock times in its zone. Each one runs once,
// at the first instant the zone's clock shows that time or later:
//
//   - A time skipped by a spring-forward runs at the first instant after the
//     gap: 02:30 America/Los_Angeles on 2026-03-08 runs at 03:00 PDT. Several
//     skipped times collapse into that one run.
//   - A time shown twice by a fall-back runs at its first occurrence only:
//     01:30 America/Los_Angeles on 2026-11-01 runs at 01:30 PDT, not again at
//     01:30 PST. This holds for cron too: "0 * * * *" runs at 01:00 PDT and
//     then 02:00 PST, a two-hour gap. (Vixie cron would rerun wildcard-hour
//     jobs in the repeated hour; one rule for every schedule is easier to
//     reason about for backups.)
//
// Neither gocron v2.21's DailyJob nor its CronJob (robfig/cron) follows
// this rule: DailyJob runs 02:30 at 01:30 PST on the spring-forward day,
// CronJob skips that day, both run it at 03:30 PDT under
// DaylightSavingsTimeRunAfterTransition, and a CRON_TZ job in a UTC
// scheduler runs 01:30 twice on the fall-back day. So Next is computed here,
// and Schedule.Gocron plugs it into gocron through WithCronImplementation.
//
// # Retention
//
// Policy.Apply is grandfather-father-son retention in the style of restic's
// forget: see Policy.
package schedule
