package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Schedule is a parsed PGBACKUPS_SCHEDULE: the times backups run, in one
// time zone. A nil *Schedule means no schedule; its methods are safe to call.
type Schedule struct {
	kind     kind
	loc      *time.Location
	daily    []int64       // kindDaily: seconds since midnight, ascending, distinct
	cron     cronSpec      // kindCron
	every    time.Duration // kindEvery: whole seconds
	interval time.Duration
}

type kind int

const (
	kindDaily kind = iota + 1
	kindCron
	kindEvery
)

// Parse parses a PGBACKUPS_SCHEDULE value (see the package doc for the
// syntax). An empty or blank spec means no schedule: Parse returns nil, nil.
// Errors name the part of spec that is wrong.
func Parse(spec string) (*Schedule, error) {
	text := strings.TrimSpace(spec)
	if text == "" {
		return nil, nil
	}
	if strings.Contains(text, "://") {
		// Not quoted: a connection string put here may carry a password.
		return nil, errors.New("a URL is not a schedule (not shown: it may hold a password); a schedule looks like \"02:00 America/Los_Angeles\" or \"0 */6 * * *\"")
	}
	s, err := parse(text)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return s, nil
}

func parse(text string) (*Schedule, error) {
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if len(text) < len(prefix) || !strings.EqualFold(text[:len(prefix)], prefix) {
			continue
		}
		zone, rest := text[len(prefix):], ""
		if i := strings.IndexFunc(zone, unicode.IsSpace); i >= 0 {
			zone, rest = zone[:i], strings.TrimSpace(zone[i:])
		}
		if zone == "" {
			return nil, fmt.Errorf("%s names no time zone", prefix)
		}
		loc, err := loadZone(zone)
		if err != nil {
			return nil, err
		}
		if rest == "" {
			return nil, fmt.Errorf("no cron expression after %s%s", prefix, zone)
		}
		if isDaily(rest) {
			return nil, fmt.Errorf("%s goes with cron expressions: write daily times as \"%s %s\"", prefix, rest, zone)
		}
		return parseCronSchedule(rest, loc)
	}
	if isDaily(text) {
		return parseDaily(text)
	}
	return parseCronSchedule(text, time.UTC)
}

// isDaily reports whether text starts like Heroku-style daily times. Cron
// fields never hold a colon.
func isDaily(text string) bool {
	first := strings.Fields(text)[0]
	return first[0] >= '0' && first[0] <= '9' && strings.Contains(first, ":")
}

// parseDaily parses "HH:MM[,HH:MM...] [zone]".
func parseDaily(text string) (*Schedule, error) {
	fields := strings.Fields(text)
	loc := time.UTC
	if last := fields[len(fields)-1]; len(fields) > 1 && strings.ContainsFunc(last, unicode.IsLetter) {
		if l := strings.ToLower(strings.TrimRight(last, ".")); l == "am" || l == "pm" || l == "a.m" || l == "p.m" {
			return nil, fmt.Errorf("%q: times are 24-hour, without am or pm: 02:00 for 2 am, 14:00 for 2 pm", text)
		}
		var err error
		if loc, err = loadZone(last); err != nil {
			return nil, err
		}
		fields = fields[:len(fields)-1]
	}
	list := strings.Join(fields, " ")
	var tods []int64
	seen := map[int64]string{}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty time in list %q", list)
		}
		tod, err := parseClock(item)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[tod]; dup {
			return nil, fmt.Errorf("time %q repeats %q", item, prev)
		}
		seen[tod] = item
		tods = append(tods, tod)
	}
	slices.Sort(tods)
	gap := 86400 - tods[len(tods)-1] + tods[0]
	for i := 1; i < len(tods); i++ {
		gap = max(gap, tods[i]-tods[i-1])
	}
	return &Schedule{
		kind:     kindDaily,
		loc:      loc,
		daily:    tods,
		interval: time.Duration(gap)*time.Second + maxFallBack(loc),
	}, nil
}

// parseClock parses H:MM or HH:MM into seconds since midnight.
func parseClock(item string) (int64, error) {
	h, m, ok := strings.Cut(item, ":")
	if !ok || !isDigits(h) || len(h) > 2 || !isDigits(m) || len(m) != 2 {
		return 0, fmt.Errorf("time %q: want HH:MM such as 02:00, several separated by commas, then a time zone", item)
	}
	hour, minute := int64(h[0]-'0'), int64(m[0]-'0')*10+int64(m[1]-'0')
	if len(h) == 2 {
		hour = hour*10 + int64(h[1]-'0')
	}
	if hour > 23 {
		return 0, fmt.Errorf("time %q: hour %d out of range 0-23", item, hour)
	}
	if minute > 59 {
		return 0, fmt.Errorf("time %q: minute %d out of range 0-59", item, minute)
	}
	return hour*3600 + minute*60, nil
}

// parseCronSchedule parses a cron expression or descriptor run in loc.
func parseCronSchedule(expr string, loc *time.Location) (*Schedule, error) {
	if fields := strings.Fields(expr); strings.EqualFold(fields[0], "@every") {
		period := strings.Join(fields[1:], "")
		d, err := time.ParseDuration(period)
		if err != nil {
			return nil, fmt.Errorf("@every: %w", err)
		}
		if d < time.Second || d%time.Second != 0 {
			return nil, fmt.Errorf("@every %s: want a whole number of seconds, at least 1s", period)
		}
		return &Schedule{kind: kindEvery, loc: loc, every: d, interval: d}, nil
	}
	c, err := parseCron(expr)
	if err != nil {
		return nil, err
	}
	days := c.longestDayGap()
	if days == 0 {
		return nil, fmt.Errorf("never runs: no date matches its day-of-month, month and day-of-week")
	}
	first, last, gap := c.todSpan()
	gap = max(gap, int64(days)*86400-last+first)
	return &Schedule{
		kind:     kindCron,
		loc:      loc,
		cron:     c,
		interval: time.Duration(gap)*time.Second + maxFallBack(loc),
	}, nil
}

// String returns the canonical form of s, which Parse reads back as the
// same schedule: zone abbreviations become IANA names, daily times are
// sorted and zero-padded, and cron's CRON_TZ= is left out for UTC.
func (s *Schedule) String() string {
	if s == nil {
		return ""
	}
	var expr string
	switch s.kind {
	case kindDaily:
		times := make([]string, len(s.daily))
		for i, tod := range s.daily {
			times[i] = fmt.Sprintf("%02d:%02d", tod/3600, tod%3600/60)
		}
		return strings.Join(times, ",") + " " + s.loc.String()
	case kindEvery:
		expr = "@every " + s.every.String()
	default:
		expr = s.cron.text
	}
	if s.loc == time.UTC {
		return expr
	}
	return "CRON_TZ=" + s.loc.String() + " " + expr
}

// Location returns the time zone s's wall-clock times are read in; UTC for
// a nil schedule.
func (s *Schedule) Location() *time.Location {
	if s == nil {
		return time.UTC
	}
	return s.loc
}

// Interval returns the longest time between two consecutive runs, counting
// daylight saving changes: 25h for "02:00 America/Los_Angeles", because of
// the fall-back day. It is an upper bound: the wall-clock gap plus the
// zone's largest fall-back, which overstates by that much (usually an hour)
// when no longest gap spans a fall-back. It is 0 for a nil schedule.
func (s *Schedule) Interval() time.Duration {
	if s == nil {
		return 0
	}
	return s.interval
}

// Next returns the first run strictly after after, in s's location. Each
// scheduled wall-clock time runs once, at the first instant the zone's clock
// shows it or later: a time skipped by a spring-forward runs when the gap
// ends, a time shown twice by a fall-back runs at its first occurrence.
// @every runs at multiples of its period since the Unix epoch. Next returns
// the zero Time for a nil schedule.
func (s *Schedule) Next(after time.Time) time.Time {
	if s == nil {
		return time.Time{}
	}
	if s.kind == kindEvery {
		period := int64(s.every / time.Second)
		u := after.Unix()
		k := u / period
		if u%period < 0 {
			k-- // round toward minus infinity
		}
		return time.Unix((k+1)*period, 0).In(s.loc)
	}
	w := shownBy(s.loc, after)
	for {
		wall, ok := s.nextWall(w)
		if !ok {
			return time.Time{}
		}
		at := time.Unix(firstInstant(s.loc, wall), 0).In(s.loc)
		if at.After(after) {
			return at
		}
		w = wall + 1
	}
}

// NextN returns the next n runs after after, in order.
func (s *Schedule) NextN(after time.Time, n int) []time.Time {
	if s == nil || n <= 0 {
		return nil
	}
	out := make([]time.Time, 0, n)
	for range n {
		next := s.Next(after)
		if next.IsZero() {
			break
		}
		out = append(out, next)
		after = next
	}
	return out
}

// nextWall returns the first scheduled wall-clock reading at or after w
// (seconds since 1970-01-01 00:00 on the zone's clock).
func (s *Schedule) nextWall(w int64) (int64, bool) {
	day, tod := w/86400, w%86400
	if tod < 0 {
		day, tod = day-1, tod+86400
	}
	if s.kind == kindCron {
		return s.cron.next(day, tod)
	}
	for _, t := range s.daily {
		if t >= tod {
			return day*86400 + t, true
		}
	}
	return (day+1)*86400 + s.daily[0], true
}
