package schedule

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	// Zone data built in, so a scratch or distroless image still knows
	// America/Los_Angeles; the system's copy is used when there is one.
	_ "time/tzdata"
)

// abbreviations maps a time zone abbreviation to the place whose civil time
// (daylight saving included) it names. Abbreviations are not unique; where
// one has several meanings the most common in operations wins, and the
// others need an IANA name.
var abbreviations = map[string]string{
	"UTC": "UTC",
	"GMT": "UTC",
	"Z":   "UTC",

	"HST":  "Pacific/Honolulu",
	"AKST": "America/Anchorage",
	"AKDT": "America/Anchorage",
	"PST":  "America/Los_Angeles",
	"PDT":  "America/Los_Angeles",
	"PT":   "America/Los_Angeles",
	"MST":  "America/Denver", // not Arizona, which stays on MST: write America/Phoenix
	"MDT":  "America/Denver",
	"MT":   "America/Denver",
	"CST":  "America/Chicago", // also China and Cuba Standard Time
	"CDT":  "America/Chicago",
	"CT":   "America/Chicago",
	"EST":  "America/New_York",
	"EDT":  "America/New_York",
	"ET":   "America/New_York",
	"NST":  "America/St_Johns",
	"NDT":  "America/St_Johns",
	"BRT":  "America/Sao_Paulo",
	"ART":  "America/Argentina/Buenos_Aires",

	"WET":  "Europe/Lisbon",
	"WEST": "Europe/Lisbon",
	"BST":  "Europe/London", // also Bangladesh Standard Time
	"CET":  "Europe/Paris",
	"CEST": "Europe/Paris",
	"EET":  "Europe/Athens",
	"EEST": "Europe/Athens",
	"MSK":  "Europe/Moscow",

	"WAT":  "Africa/Lagos",
	"CAT":  "Africa/Maputo",
	"EAT":  "Africa/Nairobi",
	"SAST": "Africa/Johannesburg",

	"IST":  "Asia/Kolkata", // India; also Irish and Israel Standard Time
	"PKT":  "Asia/Karachi",
	"ICT":  "Asia/Bangkok",
	"WIB":  "Asia/Jakarta",
	"SGT":  "Asia/Singapore",
	"HKT":  "Asia/Hong_Kong",
	"JST":  "Asia/Tokyo",
	"KST":  "Asia/Seoul",
	"AWST": "Australia/Perth",
	"ACST": "Australia/Adelaide",
	"ACDT": "Australia/Adelaide",
	"AEST": "Australia/Sydney", // Queensland stays on AEST: write Australia/Brisbane
	"AEDT": "Australia/Sydney",
	"NZST": "Pacific/Auckland",
	"NZDT": "Pacific/Auckland",
}

// ambiguous lists abbreviations with no dominant meaning, and what to write
// instead.
var ambiguous = map[string]string{
	"AST": "America/Halifax (Atlantic) or Asia/Riyadh (Arabia)",
	"ADT": "America/Halifax",
	"CCT": "Asia/Shanghai",
	"SST": "Pacific/Pago_Pago (Samoa) or Asia/Singapore",
}

// Abbreviations returns the time zone abbreviations Parse accepts (in any
// case), each mapped to the IANA zone it stands for. IST is taken as India,
// BST as British Summer Time, CST as US Central: other meanings need an IANA
// name. The map is a copy.
func Abbreviations() map[string]string {
	return maps.Clone(abbreviations)
}

// loadZone turns an IANA name or an abbreviation into a Location.
func loadZone(name string) (*time.Location, error) {
	upper := strings.ToUpper(name)
	if iana, ok := abbreviations[upper]; ok {
		return time.LoadLocation(iana)
	}
	if instead, ok := ambiguous[upper]; ok {
		return nil, fmt.Errorf("time zone %q is ambiguous: write %s", name, instead)
	}
	if strings.Contains(name, "/") {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc, nil
		}
	}
	return nil, fmt.Errorf("unknown time zone %q: want an IANA name such as America/Los_Angeles or one of %s",
		name, strings.Join(slices.Sorted(maps.Keys(abbreviations)), ", "))
}

// civil returns the reading of loc's wall clock at t, as seconds since
// 1970-01-01 00:00 on that clock, rounded down to the second.
func civil(t time.Time, loc *time.Location) int64 {
	_, off := t.In(loc).Zone()
	return t.Unix() + int64(off)
}

// zoneWindow bounds how far from a wall-clock reading the instant showing it
// can be: UTC offsets stay within a day.
const zoneWindow = 2 * 86400

// firstInstant returns the first instant, in Unix seconds, at which loc's
// wall clock shows w or later. This is the DST rule: a reading shown twice
// maps to its first occurrence, a reading skipped maps to the end of the gap.
func firstInstant(loc *time.Location, w int64) int64 {
	t := time.Unix(w-zoneWindow, 0).In(loc)
	for {
		off, start, end := period(t)
		// Within this zone period the clock shows u+off at instant u.
		at := w - int64(off)
		if !start.IsZero() && at < start.Unix() {
			at = start.Unix() // w was skipped: the clock passes it when this period starts
		}
		if end.IsZero() || at < end.Unix() {
			return at
		}
		t = end
	}
}

// shownBy returns a wall-clock reading w such that every reading below w was
// already shown at or before the instant after, so the run after it is at a
// reading of w or later. Normally w is the clock's reading at after; just
// after a fall-back it is the higher reading the clock showed before it.
// Next would be right starting from civil(after) too; this saves it trying,
// one by one, every reading of the repeated hour.
func shownBy(loc *time.Location, after time.Time) int64 {
	w := civil(after, loc)
	t := after.Add(-zoneWindow * time.Second).In(loc)
	for {
		off, _, end := period(t)
		if end.IsZero() || end.After(after) {
			return w
		}
		// Before end, the clock showed every reading below end+off.
		if r := end.Unix() + int64(off); r > w {
			w = r
		}
		t = end
	}
}

// maxFallBack returns the largest backward clock change loc makes between
// 2000 and 2040: the most a wall-clock gap can stretch in real time. Zone
// data lists transitions to 2037 and repeats one yearly rule after that.
func maxFallBack(loc *time.Location) time.Duration {
	var most int
	t := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).In(loc)
	stop := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	for t.Before(stop) {
		off, _, end := period(t)
		if end.IsZero() {
			break
		}
		_, next := end.Zone()
		most = max(most, off-next)
		t = end
	}
	return time.Duration(most) * time.Second
}

// period returns the UTC offset in force at t and the bounds of the zone
// period holding it, as t.ZoneBounds does (zero for unbounded). It works
// around golang/go#81583: for years after a zone's last listed transition,
// ZoneBounds reports a leap year's end a day early, so during that last day
// the period seems to end before t. That boundary changes no offset; the
// period is taken to run to the next UTC new year, where ZoneBounds is right.
func period(t time.Time) (off int, start, end time.Time) {
	_, off = t.Zone()
	start, end = t.ZoneBounds()
	if !end.IsZero() && !end.After(t) {
		end = time.Date(t.UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).In(t.Location())
	}
	return off, start, end
}
