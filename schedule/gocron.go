package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Gocron returns the job definition and job option that make a gocron v2
// scheduler run s at exactly the times Next gives:
//
//	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
//	def, opt := s.Gocron()
//	job, err := sched.NewJob(def, gocron.NewTask(backup), opt, gocron.WithSingletonMode(gocron.LimitModeReschedule))
//
// The definition is a CronJob whose cron implementation is s itself, so
// gocron asks s.Next for every run instead of using robfig/cron or its own
// daily-job arithmetic, neither of which follows this package's DST rule.
// The scheduler should be created WithLocation(time.UTC): gocron drops a
// run whose wall clock equals the previous run's in the scheduler's zone
// (its own fall-back guard), and only in UTC are Next's strictly
// increasing times sure to pass it. In the schedule's own zone, which
// NewJob also accepts, a daily or cron schedule passes too, but @every
// does not: its fixed steps read 01:00 twice on a fall-back night
// (01:00 PDT, then 01:00 PST), and gocron drops the second. NewJob fails
// in any other zone, and for a nil schedule.
func (s *Schedule) Gocron() (gocron.JobDefinition, gocron.JobOption) {
	return gocron.CronJob(s.String(), true), gocron.WithCronImplementation(gocronCron{s})
}

// gocronCron is s as a gocron.Cron.
type gocronCron struct{ s *Schedule }

var _ gocron.Cron = gocronCron{}

// IsValid is called by gocron's NewJob with the scheduler's location.
func (c gocronCron) IsValid(crontab string, loc *time.Location, now time.Time) error {
	if c.s == nil {
		return errors.New("schedule: no schedule to run")
	}
	if crontab != c.s.String() {
		return fmt.Errorf("schedule: gocron job %q was not made by Gocron for %q", crontab, c.s.String())
	}
	if loc == nil || loc.String() != c.s.loc.String() && loc.String() != time.UTC.String() {
		return fmt.Errorf("schedule: %q needs a gocron scheduler created WithLocation(%s) or UTC, not %v", c.s.String(), c.s.loc, loc)
	}
	if c.s.Next(now).IsZero() {
		return errors.New("schedule: never runs")
	}
	return nil
}

// Next returns s.Next(last) in last's location, which is the scheduler's:
// gocron compares the two times' wall clocks in their own locations.
func (c gocronCron) Next(last time.Time) time.Time {
	next := c.s.Next(last)
	if next.IsZero() {
		return next
	}
	return next.In(last.Location())
}
