package schedule

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func mustParse(t testing.TB, spec string) *Schedule {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// US clocks change on 2026-03-08 (02:00 PST -> 03:00 PDT) and 2026-11-01
// (02:00 PDT -> 01:00 PST); European ones on 2026-03-29 (02:00 CET -> 03:00
// CEST) and 2026-10-25 (03:00 CEST -> 02:00 CET).
func TestNext(t *testing.T) {
	tests := []struct {
		name  string
		spec  string
		after string
		want  []string // RFC 3339, in the schedule's zone
	}{
		{"plain days", "02:00 UTC", "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z"}},
		{"strictly after", "02:00 UTC", "2026-01-01T02:00:00Z",
			[]string{"2026-01-02T02:00:00Z"}},
		{"just before", "02:00 UTC", "2026-01-01T01:59:59.999999999Z",
			[]string{"2026-01-01T02:00:00Z"}},
		{"just after", "02:00 UTC", "2026-01-01T02:00:00.000000001Z",
			[]string{"2026-01-02T02:00:00Z"}},
		{"after in another zone", "02:00 America/Los_Angeles", "2026-01-01T09:59:00Z",
			[]string{"2026-01-01T02:00:00-08:00"}},
		{"several a day", "14:00,02:00 Europe/Berlin", "2026-01-01T12:00:00+01:00",
			[]string{"2026-01-01T14:00:00+01:00", "2026-01-02T02:00:00+01:00", "2026-01-02T14:00:00+01:00"}},

		// Spring forward: a skipped time runs once, when the gap ends.
		{"LA skipped time runs at 03:00", "02:30 America/Los_Angeles", "2026-03-07T12:00:00-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"}},
		{"LA skipped from just before the gap", "02:30 America/Los_Angeles", "2026-03-08T01:59:59-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"}},
		{"LA skipped, asked at the gap's end", "02:30 America/Los_Angeles", "2026-03-08T03:00:00-07:00",
			[]string{"2026-03-09T02:30:00-07:00"}},
		{"LA gap times collapse", "02:00,02:30,03:00,04:00 America/Los_Angeles", "2026-03-08T00:00:00-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-08T04:00:00-07:00", "2026-03-09T02:00:00-07:00"}},
		{"LA 01:59 is before the gap", "01:59 America/Los_Angeles", "2026-03-07T12:00:00-08:00",
			[]string{"2026-03-08T01:59:00-08:00", "2026-03-09T01:59:00-07:00"}},
		{"LA 03:00 after the gap", "03:00 America/Los_Angeles", "2026-03-07T12:00:00-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-09T03:00:00-07:00"}},
		{"Berlin skipped time", "02:30 Europe/Berlin", "2026-03-28T12:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},

		// Fall back: a repeated time runs once, at its first occurrence.
		{"LA repeated time runs once", "01:30 America/Los_Angeles", "2026-10-31T12:00:00-07:00",
			[]string{"2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"}},
		{"LA asked during the second pass", "01:30 America/Los_Angeles", "2026-11-01T01:10:00-08:00",
			[]string{"2026-11-02T01:30:00-08:00"}},
		{"LA earlier time during the second pass", "01:05 America/Los_Angeles", "2026-11-01T01:10:00-08:00",
			[]string{"2026-11-02T01:05:00-08:00"}},
		{"LA 02:00 after the second pass", "02:00 America/Los_Angeles", "2026-11-01T01:10:00-08:00",
			[]string{"2026-11-01T02:00:00-08:00"}},
		{"LA asked late in the first pass", "01:30,01:50 America/Los_Angeles", "2026-11-01T01:45:00-07:00",
			[]string{"2026-11-01T01:50:00-07:00", "2026-11-02T01:30:00-08:00"}},
		{"LA 01:00 is the transition's first reading", "01:00 America/Los_Angeles", "2026-10-31T12:00:00-07:00",
			[]string{"2026-11-01T01:00:00-07:00", "2026-11-02T01:00:00-08:00"}},
		{"Berlin repeated time", "02:30 Europe/Berlin", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		{"Berlin twice a day across fall back", "02:00,14:00 Europe/Berlin", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-24T14:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T14:00:00+01:00", "2026-10-26T02:00:00+01:00"}},

		// Chile changes clocks at midnight: on 2026-09-06 00:00 does not
		// exist, and on 2026-04-05 the clock goes from 00:00 back to 23:00
		// the day before, so Apr 4 23:30 comes round twice.
		{"Santiago skipped midnight", "00:00 America/Santiago", "2026-09-05T12:00:00-04:00",
			[]string{"2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"}},
		{"Santiago repeated 23:30", "23:30 America/Santiago", "2026-04-04T12:00:00-03:00",
			[]string{"2026-04-04T23:30:00-03:00", "2026-04-05T23:30:00-04:00"}},

		// Cron follows the same rule.
		{"cron skipped time", "CRON_TZ=America/Los_Angeles 30 2 * * *", "2026-03-07T12:00:00-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"}},
		{"cron repeated time", "CRON_TZ=America/Los_Angeles 30 1 * * *", "2026-10-31T12:00:00-07:00",
			[]string{"2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"}},
		{"cron hourly over spring forward", "CRON_TZ=America/Los_Angeles 0 * * * *", "2026-03-08T00:30:00-08:00",
			[]string{"2026-03-08T01:00:00-08:00", "2026-03-08T03:00:00-07:00", "2026-03-08T04:00:00-07:00"}},
		{"cron hourly over fall back", "CRON_TZ=America/Los_Angeles 0 * * * *", "2026-11-01T00:30:00-07:00",
			[]string{"2026-11-01T01:00:00-07:00", "2026-11-01T02:00:00-08:00", "2026-11-01T03:00:00-08:00"}},
		{"cron quarter hours over spring forward", "CRON_TZ=America/Los_Angeles */15 * * * *", "2026-03-08T01:40:00-08:00",
			[]string{"2026-03-08T01:45:00-08:00", "2026-03-08T03:00:00-07:00", "2026-03-08T03:15:00-07:00"}},
		{"cron quarter hours over fall back", "CRON_TZ=America/Los_Angeles */15 * * * *", "2026-11-01T01:40:00-07:00",
			[]string{"2026-11-01T01:45:00-07:00", "2026-11-01T02:00:00-08:00"}},
		{"cron Berlin spring", "CRON_TZ=Europe/Berlin 30 2 * * *", "2026-03-28T12:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"cron Berlin fall", "TZ=Europe/Berlin 30 2 * * *", "2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		{"cron Berlin every 6h", "CRON_TZ=Europe/Berlin 0 */6 * * *", "2026-10-24T19:00:00+02:00",
			[]string{"2026-10-25T00:00:00+02:00", "2026-10-25T06:00:00+01:00"}},
		{"cron weekly over spring forward", "CRON_TZ=America/Los_Angeles 30 2 * * SUN", "2026-03-01T12:00:00-08:00",
			[]string{"2026-03-08T03:00:00-07:00", "2026-03-15T02:30:00-07:00"}},

		// Cron fields.
		{"seconds", "*/20 * * * * *", "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
		{"every second from a fraction", "* * * * * *", "2026-01-01T00:00:00.5Z",
			[]string{"2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"}},
		{"every 6 hours", "0 */6 * * *", "2026-01-01T05:00:00Z",
			[]string{"2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T18:00:00Z", "2026-01-02T00:00:00Z"}},
		{"day-of-month or day-of-week", "0 0 13 * FRI", "2026-01-01T00:00:00Z",
			[]string{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"}},
		{"day-of-month and any weekday", "0 0 13 * *", "2026-01-01T00:00:00Z",
			[]string{"2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"}},
		{"weekday and any day-of-month", "0 0 ? * MON", "2026-01-01T00:00:00Z",
			[]string{"2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"}},
		{"7 is Sunday", "0 12 * * 7", "2026-01-01T00:00:00Z",
			[]string{"2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z"}},
		{"weekday range wrapping to 7", "0 12 * * 6-7", "2026-01-01T00:00:00Z",
			[]string{"2026-01-03T12:00:00Z", "2026-01-04T12:00:00Z", "2026-01-10T12:00:00Z"}},
		{"month names", "0 9 1 jan,JUL *", "2026-01-02T00:00:00Z",
			[]string{"2026-07-01T09:00:00Z", "2027-01-01T09:00:00Z"}},
		{"31st skips short months", "0 0 31 * *", "2026-01-31T00:00:00Z",
			[]string{"2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"}},
		{"leap day", "0 0 29 2 *", "2026-01-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"leap day skips 2100", "0 0 29 2 *", "2096-03-01T00:00:00Z",
			[]string{"2104-02-29T00:00:00Z"}},
		{"yearly", "@yearly", "2026-06-01T00:00:00Z",
			[]string{"2027-01-01T00:00:00Z"}},
		{"weekly in a zone", "CRON_TZ=Asia/Tokyo @weekly", "2026-01-01T00:00:00+09:00",
			[]string{"2026-01-04T00:00:00+09:00"}},
		{"every, epoch aligned", "@every 1h30m", "2026-01-01T00:00:00Z",
			[]string{"2026-01-01T01:30:00Z", "2026-01-01T03:00:00Z"}},
		{"every, from a fraction", "@every 10s", "2026-01-01T00:00:05.5Z",
			[]string{"2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"}},
		{"every, in its zone", "TZ=Asia/Tokyo @every 24h", "2026-01-01T08:00:00+09:00",
			[]string{"2026-01-01T09:00:00+09:00"}},
		{"every, before 1970", "@every 7h", "1969-12-31T20:00:00Z",
			[]string{"1970-01-01T00:00:00Z", "1970-01-01T07:00:00Z"}},

		// golang/go#81583: ZoneBounds misreports the last day of 2040.
		{"end of a leap year past the tz table", "02:00 America/Los_Angeles", "2040-12-30T12:00:00-08:00",
			[]string{"2040-12-31T02:00:00-08:00", "2041-01-01T02:00:00-08:00"}},
		{"hourly over that new year", "CRON_TZ=Australia/Sydney 0 * * * *", "2041-01-01T09:30:00+11:00",
			[]string{"2041-01-01T10:00:00+11:00", "2041-01-01T11:00:00+11:00", "2041-01-01T12:00:00+11:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.spec)
			got := s.NextN(mustTime(t, tt.after), len(tt.want))
			for i := range tt.want {
				if i >= len(got) {
					t.Fatalf("NextN returned %d times, want %d", len(got), len(tt.want))
				}
				if g := got[i].Format(time.RFC3339); g != tt.want[i] {
					t.Errorf("run %d = %s, want %s", i, g, tt.want[i])
				}
				if got[i].Location() != s.Location() {
					t.Errorf("run %d is in %v, want %v", i, got[i].Location(), s.Location())
				}
			}
		})
	}
}

// TestNextMatchesClockWalk checks Next against the rule stated directly: walk
// the zone's clock step by step and run whenever it first shows a scheduled
// reading or a later one. Whether a reading is scheduled is asked of
// robfig/cron in UTC, where no reading is skipped or repeated.
func TestNextMatchesClockWalk(t *testing.T) {
	zones := []string{
		"UTC", "America/Los_Angeles", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
		"Australia/Sydney", "America/St_Johns", "Asia/Kolkata", "Europe/London", "Pacific/Chatham",
	}
	tests := []struct {
		spec  string // without zone
		robf  string // the same readings for robfig/cron, six fields
		daily bool
		step  time.Duration
	}{
		{"02:30", "0 30 2 * * *", true, time.Minute},
		{"01:30", "0 30 1 * * *", true, time.Minute},
		{"00:00,02:00,02:30,03:00,12:00", "0 0,30 2 * * *|0 0 0,3,12 * * *", true, time.Minute},
		{"23:30", "0 30 23 * * *", true, time.Minute},
		{"0 * * * *", "0 0 * * * *", false, time.Minute},
		{"*/15 * * * *", "0 */15 * * * *", false, time.Minute},
		{"45 1-3 * * *", "0 45 1-3 * * *", false, time.Minute},
		{"0 0 * * SUN", "0 0 0 * * SUN", false, time.Minute},
		{"*/20 * * * * *", "*/20 * * * * *", false, time.Second},
	}
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		windows := transitions2026(loc)
		windows = append(windows, time.Date(2026, 6, 15, 0, 0, 0, 0, loc))
		for _, tt := range tests {
			spec := tt.spec + " " + zone
			if !tt.daily {
				spec = "CRON_TZ=" + zone + " " + tt.spec
			}
			s := mustParse(t, spec)
			var match []cron.Schedule
			for _, expr := range strings.Split(tt.robf, "|") {
				m, err := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse(expr)
				if err != nil {
					t.Fatal(err)
				}
				match = append(match, m)
			}
			for _, center := range windows {
				span := 3 * 24 * time.Hour
				if tt.step == time.Second {
					span = 3 * time.Hour
				}
				from, to := center.Add(-span/2), center.Add(span/2)
				// Every scheduled reading near the window, ascending.
				var walls []int64
				lo, hi := time.Unix(civil(from, loc)-86400, 0).UTC(), time.Unix(civil(to, loc)+86400, 0).UTC()
				for _, m := range match {
					for at := m.Next(lo); at.Before(hi); at = m.Next(at) {
						walls = append(walls, at.Unix())
					}
				}
				slices.Sort(walls)
				want := walkClock(loc, from, to, tt.step, walls)
				got := s.NextN(from, len(want)+1)
				for len(got) > 0 && got[len(got)-1].After(to) {
					got = got[:len(got)-1]
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s from %s:\n got %v\nwant %v", spec, from, got, want)
				}
			}
		}
	}
}

// walkClock returns the instants in (from, to] at which loc's clock first
// shows one of the readings walls (ascending) or a later one, stepping by
// step (every zone changes its clock on a whole minute).
func walkClock(loc *time.Location, from, to time.Time, step time.Duration, walls []int64) []time.Time {
	var out []time.Time
	shown := civil(from, loc) // the highest reading shown so far
	for at := from.Add(step); !at.After(to); at = at.Add(step) {
		r := civil(at, loc)
		// Is a scheduled reading in (shown, r]?
		if i, _ := slices.BinarySearch(walls, shown+1); i < len(walls) && walls[i] <= r {
			out = append(out, at.In(loc))
		}
		shown = max(shown, r)
	}
	return out
}

// transitions2026 returns loc's clock changes in 2026.
func transitions2026(loc *time.Location) []time.Time {
	var out []time.Time
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
	end := time.Date(2027, 1, 1, 0, 0, 0, 0, loc)
	for {
		off, _, next := period(t)
		if next.IsZero() || next.After(end) {
			return out
		}
		if _, o := next.Zone(); o != off {
			out = append(out, next)
		}
		t = next
	}
}

// TestInterval checks that Interval is never shorter than a real gap
// between runs, and at most the zone's fall-back longer than the longest.
func TestInterval(t *testing.T) {
	specs := []string{
		"02:00 UTC", "02:30 America/Los_Angeles", "01:30 America/Los_Angeles", "02:00,14:00 Europe/Berlin",
		"01:00,23:00 America/Los_Angeles", "00:00 America/Santiago", "02:00 Australia/Lord_Howe",
		"CRON_TZ=America/Los_Angeles 0 * * * *", "CRON_TZ=Europe/Berlin 0 */6 * * *",
		"CRON_TZ=America/Los_Angeles 0 0 * * MON", "CRON_TZ=Europe/London 0 0 1 * *",
		"0 0 29 2 *", "@every 7h", "0 9 * * MON-FRI",
	}
	for _, spec := range specs {
		s := mustParse(t, spec)
		var longest time.Duration
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		until := from.AddDate(2, 0, 0)
		if spec == "0 0 29 2 *" {
			from, until = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2110, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		prev := s.Next(from)
		for prev.Before(until) {
			next := s.Next(prev)
			longest = max(longest, next.Sub(prev))
			prev = next
		}
		slack := maxFallBack(s.Location())
		if got := s.Interval(); got < longest || got > longest+slack {
			t.Errorf("%s: Interval() = %v, longest gap seen %v (slack %v)", spec, got, longest, slack)
		}
	}
}

// TestNextNAgreesWithNext checks NextN against repeated Next, and that runs
// strictly increase in time and, in the zone, on the wall clock.
func TestNextNAgreesWithNext(t *testing.T) {
	s := mustParse(t, "CRON_TZ=America/Los_Angeles */30 * * * *")
	from := time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC)
	runs := s.NextN(from, 100)
	if len(runs) != 100 {
		t.Fatalf("NextN gave %d runs, want 100", len(runs))
	}
	prev := from
	for i, r := range runs {
		if want := s.Next(prev); !r.Equal(want) {
			t.Fatalf("run %d = %v, Next gives %v", i, r, want)
		}
		if i > 0 && civil(r, s.Location()) <= civil(runs[i-1], s.Location()) {
			t.Errorf("run %d at %v does not read later than %v", i, r, runs[i-1])
		}
		prev = r
	}
	if got := s.NextN(from, 0); got != nil {
		t.Errorf("NextN(0) = %v", got)
	}
	if got := s.NextN(from, -1); got != nil {
		t.Errorf("NextN(-1) = %v", got)
	}
}

func BenchmarkNext(b *testing.B) {
	for _, spec := range []string{"02:00 America/Los_Angeles", "CRON_TZ=Europe/Berlin */5 * * * *", "0 0 29 2 MON"} {
		s := mustParse(b, spec)
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		b.Run(spec, func(b *testing.B) {
			for b.Loop() {
				s.Next(at)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, spec := range []string{"02:00 America/Los_Angeles", "CRON_TZ=Europe/Berlin */5 * * * *", "0 0 29 2 MON"} {
		b.Run(spec, func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
