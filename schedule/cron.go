package schedule

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// cronSpec is a parsed cron expression. Each field is a bit set: bit n set
// means value n matches.
type cronSpec struct {
	text    string // canonical expression: fields upper-cased and single-spaced, or a descriptor
	second  uint64 // 0-59
	minute  uint64 // 0-59
	hour    uint64 // 0-23
	dom     uint64 // 1-31
	month   uint64 // 1-12
	dow     uint64 // 0-6, Sunday is 0
	domStar bool   // day-of-month was * or ?
	dowStar bool   // day-of-week was * or ?
}

type field struct {
	name     string
	min, max int // values accepted
	starMax  int // the top of *; differs from max only for day-of-week, where 7 is Sunday again
	names    map[string]int
}

var (
	secondField = field{name: "second", min: 0, max: 59, starMax: 59}
	minuteField = field{name: "minute", min: 0, max: 59, starMax: 59}
	hourField   = field{name: "hour", min: 0, max: 23, starMax: 23}
	domField    = field{name: "day-of-month", min: 1, max: 31, starMax: 31}
	monthField  = field{name: "month", min: 1, max: 12, starMax: 12, names: map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
	}}
	dowField = field{name: "day-of-week", min: 0, max: 7, starMax: 6, names: map[string]int{
		"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6,
	}}
)

// descriptors maps each @name to its canonical name and six-field expression.
var descriptors = map[string][2]string{
	"@yearly":   {"@yearly", "0 0 0 1 1 *"},
	"@annually": {"@yearly", "0 0 0 1 1 *"},
	"@monthly":  {"@monthly", "0 0 0 1 * *"},
	"@weekly":   {"@weekly", "0 0 0 * * 0"},
	"@daily":    {"@daily", "0 0 0 * * *"},
	"@midnight": {"@daily", "0 0 0 * * *"},
	"@hourly":   {"@hourly", "0 0 * * * *"},
}

// parseCron parses a cron expression without its CRON_TZ= prefix.
func parseCron(expr string) (cronSpec, error) {
	if strings.HasPrefix(expr, "@") {
		d, ok := descriptors[strings.ToLower(expr)]
		if !ok {
			return cronSpec{}, fmt.Errorf("unknown descriptor %q: want @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @every <duration>", expr)
		}
		c, err := parseFields(strings.Fields(d[1]))
		c.text = d[0]
		return c, err
	}
	fields := strings.Fields(expr)
	six := fields
	switch len(fields) {
	case 5:
		six = append([]string{"0"}, fields...)
	case 6:
	default:
		return cronSpec{}, fmt.Errorf("cron expression has %d fields: want 5 (minute hour day-of-month month day-of-week) or 6 (seconds first), or daily times such as \"02:00 America/Los_Angeles\"", len(fields))
	}
	c, err := parseFields(six)
	if err != nil {
		return cronSpec{}, err
	}
	c.text = strings.ToUpper(strings.Join(fields, " "))
	return c, nil
}

// parseFields parses the six fields second to day-of-week.
func parseFields(f []string) (cronSpec, error) {
	var c cronSpec
	var err error
	if c.second, _, err = secondField.parse(f[0]); err != nil {
		return c, err
	}
	if c.minute, _, err = minuteField.parse(f[1]); err != nil {
		return c, err
	}
	if c.hour, _, err = hourField.parse(f[2]); err != nil {
		return c, err
	}
	if c.dom, c.domStar, err = domField.parse(f[3]); err != nil {
		return c, err
	}
	if c.month, _, err = monthField.parse(f[4]); err != nil {
		return c, err
	}
	if c.dow, c.dowStar, err = dowField.parse(f[5]); err != nil {
		return c, err
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday
		c.dow = c.dow&^(1<<7) | 1
	}
	return c, nil
}

// parse parses one field: a comma-separated list of *, ?, N, N-M, each with
// an optional /step. star reports whether the field is unrestricted (* or ?
// without a step above 1), which matters for the day-of-month/day-of-week
// rule.
func (f field) parse(text string) (set uint64, star bool, err error) {
	for part := range strings.SplitSeq(text, ",") {
		s, st, err := f.parsePart(part)
		if err != nil {
			return 0, false, fmt.Errorf("%s %q: %w", f.name, text, err)
		}
		set |= s
		star = star || st
	}
	return set, star, nil
}

func (f field) parsePart(part string) (set uint64, star bool, err error) {
	if part == "" {
		return 0, false, fmt.Errorf("empty list element")
	}
	span, stepText, hasStep := strings.Cut(part, "/")
	step := 1
	if hasStep {
		step, err = strconv.Atoi(stepText)
		if err != nil || step < 1 || !isDigits(stepText) {
			return 0, false, fmt.Errorf("step %q: want a whole number of at least 1", stepText)
		}
	}
	var lo, hi int
	switch {
	case span == "*" || span == "?":
		lo, hi = f.min, f.starMax
		star = step == 1
	case strings.Contains(span, "-"):
		loText, hiText, _ := strings.Cut(span, "-")
		if lo, err = f.value(loText); err != nil {
			return 0, false, err
		}
		if hi, err = f.value(hiText); err != nil {
			return 0, false, err
		}
		if hi < lo {
			return 0, false, fmt.Errorf("range %q runs backwards", span)
		}
	default:
		if lo, err = f.value(span); err != nil {
			return 0, false, err
		}
		hi = lo
		if hasStep { // N/step means N-max/step
			hi = max(lo, f.starMax)
		}
	}
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, star, nil
}

// value parses a number or a name and checks its range.
func (f field) value(text string) (int, error) {
	if v, ok := f.names[strings.ToUpper(text)]; ok {
		return v, nil
	}
	if !isDigits(text) {
		if f.names != nil {
			return 0, fmt.Errorf("%q is not a number or a name", text)
		}
		return 0, fmt.Errorf("%q is not a number", text)
	}
	v, err := strconv.Atoi(text)
	if err != nil || v < f.min || v > f.max {
		return 0, fmt.Errorf("%s out of range %d-%d", text, f.min, f.max)
	}
	return v, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// dayMatches reports whether a date matches the month, day-of-month and
// day-of-week fields. As in Vixie cron, when both day fields are restricted
// either may match.
func (c *cronSpec) dayMatches(m time.Month, d int, wd time.Weekday) bool {
	if c.month&(1<<m) == 0 {
		return false
	}
	domOK := c.dom&(1<<d) != 0
	dowOK := c.dow&(1<<wd) != 0
	if c.domStar || c.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// timeOfDay returns the first time of day, in seconds since midnight, at or
// after tod that matches the hour, minute and second fields.
func (c *cronSpec) timeOfDay(tod int64) (int64, bool) {
	h0, m0, s0 := int(tod/3600), int(tod%3600/60), int(tod%60)
	for h := h0; h < 24; h++ {
		if c.hour&(1<<h) == 0 {
			continue
		}
		m := 0
		if h == h0 {
			m = m0
		}
		for ; m < 60; m++ {
			if c.minute&(1<<m) == 0 {
				continue
			}
			s := 0
			if h == h0 && m == m0 {
				s = s0
			}
			if rest := c.second >> s; rest != 0 {
				s += bits.TrailingZeros64(rest)
				return int64(h*3600 + m*60 + s), true
			}
		}
	}
	return 0, false
}

// cycleDays is the length of the Gregorian calendar's 400-year cycle, after
// which dates and weekdays repeat.
const cycleDays = 146097

// next returns the first wall-clock reading at or after day*86400+tod that
// matches, searching one calendar cycle.
func (c *cronSpec) next(day, tod int64) (int64, bool) {
	for limit := day + cycleDays + 1; day < limit; {
		y, m, d := time.Unix(day*86400, 0).UTC().Date()
		if c.month&(1<<m) == 0 {
			day = time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
			tod = 0
			continue
		}
		wd := time.Weekday((day%7 + 7 + 4) % 7) // 1970-01-01 was a Thursday
		if c.dayMatches(m, d, wd) {
			if t, ok := c.timeOfDay(tod); ok {
				return day*86400 + t, true
			}
		}
		day++
		tod = 0
	}
	return 0, false
}

// longestDayGap returns the most days from one matching date to the next,
// over a whole 400-year cycle, or 0 if no date ever matches.
func (c *cronSpec) longestDayGap() int {
	if c.domStar && c.dowStar && c.month == monthField.all() {
		return 1
	}
	first, last, most := -1, -1, 0
	wd := time.Saturday // 2000-01-01
	day := 0
	for y := 2000; y < 2400; y++ {
		for m := time.January; m <= time.December; m++ {
			n := daysIn(y, m)
			if c.month&(1<<m) == 0 {
				day += n
				wd = (wd + time.Weekday(n)) % 7
				continue
			}
			for d := 1; d <= n; d++ {
				if c.dayMatches(m, d, wd) {
					if first < 0 {
						first = day
					} else {
						most = max(most, day-last)
					}
					last = day
				}
				day++
				wd = (wd + 1) % 7
			}
		}
	}
	if first < 0 {
		return 0
	}
	return max(most, first+cycleDays-last)
}

// todSpan returns the first and last matching times of day and the longest
// gap between consecutive ones, all in seconds.
func (c *cronSpec) todSpan() (first, last, gap int64) {
	secs, mins, hours := members(c.second), members(c.minute), members(c.hour)
	gap = maxStep(secs)
	for i := 1; i < len(mins); i++ {
		gap = max(gap, int64(mins[i]-mins[i-1])*60+int64(secs[0]-secs[len(secs)-1]))
	}
	firstMS := int64(mins[0]*60 + secs[0])
	lastMS := int64(mins[len(mins)-1]*60 + secs[len(secs)-1])
	for i := 1; i < len(hours); i++ {
		gap = max(gap, int64(hours[i]-hours[i-1])*3600+firstMS-lastMS)
	}
	return int64(hours[0])*3600 + firstMS, int64(hours[len(hours)-1])*3600 + lastMS, gap
}

func (f field) all() uint64 {
	var set uint64
	for v := f.min; v <= f.starMax; v++ {
		set |= 1 << v
	}
	return set
}

func members(set uint64) []int {
	var out []int
	for set != 0 {
		v := bits.TrailingZeros64(set)
		out = append(out, v)
		set &^= 1 << v
	}
	return out
}

func maxStep(vs []int) int64 {
	var most int64
	for i := 1; i < len(vs); i++ {
		most = max(most, int64(vs[i]-vs[i-1]))
	}
	return most
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
