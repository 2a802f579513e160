package schedule

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, that a schedule's String reads
// back as the same schedule, and that Next moves strictly forward.
func FuzzParse(f *testing.F) {
	for _, spec := range []string{
		"", "02:00", "2:30 UTC", "02:00 America/Los_Angeles", "02:00 PDT", "02:00,14:00 Europe/Berlin",
		"01:30 America/Los_Angeles", "00:00 America/Santiago", "23:59 Pacific/Chatham", "02:00 XYZ",
		"0 */6 * * *", "*/5 * * * * *", "CRON_TZ=Europe/Berlin 30 2 * * MON-FRI", "TZ=IST 0 0 13 * FRI",
		"0 0 29 2 *", "0 0 30 2 *", "5/20 1-3 ? JAN,jul 7", "@hourly", "@midnight", "@every 1h30m",
		"CRON_TZ=Australia/Lord_Howe */30 * * * *", "cron_tz=utc @weekly", "1,,2 * * * *", "*/0 * * * *",
	} {
		f.Add(spec, int64(0))
		f.Add(spec, int64(1793404800)) // 2026-10-31T23:00:00Z
	}
	f.Fuzz(func(t *testing.T, spec string, at int64) {
		s, err := Parse(spec)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse(%q) returned a schedule and %v", spec, err)
			}
			return
		}
		if s == nil {
			if strings.TrimSpace(spec) != "" {
				t.Fatalf("Parse(%q) = nil, nil", spec)
			}
			return
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q, which does not parse: %v", spec, s.String(), err)
		}
		if !equivalent(s, again) {
			t.Fatalf("Parse(%q) and Parse(%q) differ", spec, s.String())
		}
		if s.Interval() <= 0 {
			t.Fatalf("Parse(%q).Interval() = %v", spec, s.Interval())
		}

		// Any instant from 1970 to 2370, at a fuzzed nanosecond.
		const span = 400 * 365 * 24 * 3600
		after := time.Unix((at%span+span)%span, at&0x3fffffff%1e9)
		prev := after
		for i := range 3 {
			next := s.Next(prev)
			if !next.After(prev) {
				t.Fatalf("%q: run %d after %v is %v, not after it", s, i, prev, next)
			}
			if next.Location() != s.Location() {
				t.Fatalf("%q: Next is in %v", s, next.Location())
			}
			prev = next
		}
	})
}
