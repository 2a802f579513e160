package schedule

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
)

// newScheduler starts a gocron scheduler on a fake clock at now.
func newScheduler(t *testing.T, loc *time.Location, now time.Time) gocron.Scheduler {
	t.Helper()
	sched, err := gocron.NewScheduler(gocron.WithLocation(loc), gocron.WithClock(clockwork.NewFakeClockAt(now)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sched.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	return sched
}

// TestGocronRunsNext checks that gocron, driven by Gocron, plans the same
// runs as NextN across DST changes, where its own DailyJob and CronJob
// would not.
func TestGocronRunsNext(t *testing.T) {
	tests := []struct {
		spec      string
		now       string
		schedZone string // the scheduler's location; "" for the schedule's
	}{
		{"02:30 America/Los_Angeles", "2026-03-07T12:00:00-08:00", ""},
		{"01:30 America/Los_Angeles", "2026-10-31T12:00:00-07:00", ""},
		{"01:30 America/Los_Angeles", "2026-10-31T12:00:00-07:00", "UTC"},
		{"CRON_TZ=America/Los_Angeles 0 * * * *", "2026-11-01T00:30:00-07:00", ""},
		{"CRON_TZ=America/Los_Angeles 0 3,10 * * *", "2026-06-01T00:00:00-07:00", "UTC"},
		// gocron drops a run whose wall clock equals the time it was asked
		// from; 10:00 PDT must not be compared with 10:00 UTC.
		{"CRON_TZ=America/Los_Angeles 0 3,10 * * *", "2026-06-01T10:00:00Z", "UTC"},
		{"CRON_TZ=Europe/Berlin */15 * * * *", "2026-03-29T01:20:00+01:00", ""},
		{"02:00,14:00 Europe/Berlin", "2026-10-24T12:00:00+02:00", "UTC"},
		{"*/5 * * * * *", "2026-01-01T00:00:00Z", ""},
		{"@every 90m", "2026-01-01T00:10:00Z", ""},
		// Fixed steps of real time read the same wall clock twice on the
		// fall-back night (01:00 PDT, 01:00 PST), which gocron's guard
		// drops in the schedule's zone: the daemon's scheduler runs in UTC.
		{"CRON_TZ=America/Los_Angeles @every 1h", "2026-11-01T00:30:00-07:00", "UTC"},
		{"TZ=Europe/Berlin @every 1h", "2026-10-25T01:30:00+02:00", "UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.spec+" in "+tt.schedZone, func(t *testing.T) {
			s := mustParse(t, tt.spec)
			now := mustTime(t, tt.now)
			loc := s.Location()
			if tt.schedZone != "" {
				loc, _ = time.LoadLocation(tt.schedZone)
			}
			sched := newScheduler(t, loc, now)
			def, opt := s.Gocron()
			job, err := sched.NewJob(def, gocron.NewTask(func() {}), opt)
			if err != nil {
				t.Fatal(err)
			}
			sched.Start()
			want := s.NextN(now, 6)
			var got []time.Time
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if got, err = job.NextRuns(len(want)); err == nil && len(got) == len(want) {
					break
				}
			}
			if len(got) != len(want) {
				t.Fatalf("NextRuns = %v, %v; want %v", got, err, want)
			}
			for i := range want {
				if !got[i].Equal(want[i]) {
					t.Errorf("gocron run %d at %v, Next says %v", i, got[i].In(s.Location()), want[i])
				}
			}
		})
	}
}

func TestGocronRefusesMisuse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := mustParse(t, "02:00 America/Los_Angeles")
	berlin, _ := time.LoadLocation("Europe/Berlin")

	sched := newScheduler(t, berlin, now)
	def, opt := s.Gocron()
	if _, err := sched.NewJob(def, gocron.NewTask(func() {}), opt); err == nil || !strings.Contains(err.Error(), "WithLocation(America/Los_Angeles)") {
		t.Errorf("NewJob in a Europe/Berlin scheduler: err = %v, want one naming the location needed", err)
	}

	var none *Schedule
	def, opt = none.Gocron()
	if _, err := sched.NewJob(def, gocron.NewTask(func() {}), opt); err == nil {
		t.Error("NewJob for a nil schedule succeeded")
	}

	// Without the option, gocron's own cron parser rejects daily times
	// rather than running something else.
	def, _ = s.Gocron()
	if _, err := sched.NewJob(def, gocron.NewTask(func() {})); err == nil {
		t.Error("NewJob without Gocron's option succeeded")
	}
}

// TestGocronFires runs a real scheduler for a few seconds: a six-field
// schedule firing every second must run the task every second. A loaded
// machine may start a run late; runs are planned on the clock, so one
// started late is followed by one started early, and of two gaps between
// three runs the shorter is still about a second. A schedule read as every
// minute (the seconds field dropped) gives no second run in 30 s.
func TestGocronFires(t *testing.T) {
	if testing.Short() {
		t.Skip("waits on the real clock")
	}
	s := mustParse(t, "* * * * * *")
	sched, err := gocron.NewScheduler(gocron.WithLocation(s.Location()))
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Shutdown()
	var mu sync.Mutex
	var runs []time.Time
	ran := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(runs)
	}
	def, opt := s.Gocron()
	if _, err := sched.NewJob(def, gocron.NewTask(func() {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, time.Now())
	}), opt); err != nil {
		t.Fatal(err)
	}
	sched.Start()
	for deadline := time.Now().Add(30 * time.Second); len(ran()) < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	got := ran()
	if len(got) < 3 {
		t.Fatalf("task ran %d times in 30s, want at least 3", len(got))
	}
	if gap := min(got[1].Sub(got[0]), got[2].Sub(got[1])); gap > 1500*time.Millisecond {
		t.Errorf("runs at %s, %s and %s: the shorter gap is %s, want about a second",
			got[0].Format(time.StampMilli), got[1].Format(time.StampMilli), got[2].Format(time.StampMilli), gap)
	}
}
