package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec     string
		want     string // String()
		zone     string
		interval time.Duration
	}{
		// Heroku-style daily times.
		{"02:00 America/Los_Angeles", "02:00 America/Los_Angeles", "America/Los_Angeles", 25 * time.Hour},
		{"02:00 PDT", "02:00 America/Los_Angeles", "America/Los_Angeles", 25 * time.Hour},
		{"02:00 pst", "02:00 America/Los_Angeles", "America/Los_Angeles", 25 * time.Hour},
		{"2:30 UTC", "02:30 UTC", "UTC", 24 * time.Hour},
		{"02:00", "02:00 UTC", "UTC", 24 * time.Hour},
		{"  0:05  ", "00:05 UTC", "UTC", 24 * time.Hour},
		{"23:59 Z", "23:59 UTC", "UTC", 24 * time.Hour},
		{"02:00 GMT", "02:00 UTC", "UTC", 24 * time.Hour},
		{"02:00,14:00 Europe/Berlin", "02:00,14:00 Europe/Berlin", "Europe/Berlin", 13 * time.Hour},
		{"14:00, 02:00 CET", "02:00,14:00 Europe/Paris", "Europe/Paris", 13 * time.Hour},
		{"01:00,23:00 UTC", "01:00,23:00 UTC", "UTC", 22 * time.Hour},
		{"02:00 IST", "02:00 Asia/Kolkata", "Asia/Kolkata", 24 * time.Hour},
		{"02:00 JST", "02:00 Asia/Tokyo", "Asia/Tokyo", 24 * time.Hour},
		{"02:00 AEST", "02:00 Australia/Sydney", "Australia/Sydney", 25 * time.Hour},
		{"02:00 Australia/Lord_Howe", "02:00 Australia/Lord_Howe", "Australia/Lord_Howe", 24*time.Hour + 30*time.Minute},
		{"02:00 Etc/GMT+5", "02:00 Etc/GMT+5", "Etc/GMT+5", 24 * time.Hour},

		// Cron.
		{"0 */6 * * *", "0 */6 * * *", "UTC", 6 * time.Hour},
		{"  0   */6 *  * * ", "0 */6 * * *", "UTC", 6 * time.Hour},
		{"CRON_TZ=America/Los_Angeles 0 */6 * * *", "CRON_TZ=America/Los_Angeles 0 */6 * * *", "America/Los_Angeles", 7 * time.Hour},
		{"TZ=PDT 0 */6 * * *", "CRON_TZ=America/Los_Angeles 0 */6 * * *", "America/Los_Angeles", 7 * time.Hour},
		{"cron_tz=UTC 30 2 * * *", "30 2 * * *", "UTC", 24 * time.Hour},
		{"*/5 * * * * *", "*/5 * * * * *", "UTC", 5 * time.Second},
		{"0 30 2 * * mon-fri", "0 30 2 * * MON-FRI", "UTC", 72 * time.Hour},
		{"0 0 1 * *", "0 0 1 * *", "UTC", 31 * 24 * time.Hour},
		{"0 0 31 * *", "0 0 31 * *", "UTC", 61 * 24 * time.Hour},
		{"0 0 29 2 *", "0 0 29 2 *", "UTC", (8*365 + 1) * 24 * time.Hour}, // 2096 to 2104
		{"0 0 13 * FRI", "0 0 13 * FRI", "UTC", 7 * 24 * time.Hour},
		{"0 12 * * 7", "0 12 * * 7", "UTC", 7 * 24 * time.Hour},
		{"0 9 * jan,Jul *", "0 9 * JAN,JUL *", "UTC", (31 + 30 + 31 + 30 + 31 + 1) * 24 * time.Hour}, // Jul 31 to Jan 1
		{"0 0 ? * ?", "0 0 ? * ?", "UTC", 24 * time.Hour},
		{"5/20 * * * *", "5/20 * * * *", "UTC", 20 * time.Minute}, // 5,25,45
		{"0 0,12 * * *", "0 0,12 * * *", "UTC", 12 * time.Hour},
		{"@hourly", "@hourly", "UTC", time.Hour},
		{"@daily", "@daily", "UTC", 24 * time.Hour},
		{"@midnight", "@daily", "UTC", 24 * time.Hour},
		{"CRON_TZ=Europe/Berlin @weekly", "CRON_TZ=Europe/Berlin @weekly", "Europe/Berlin", 7*24*time.Hour + time.Hour},
		{"@MONTHLY", "@monthly", "UTC", 31 * 24 * time.Hour},
		{"@annually", "@yearly", "UTC", 366 * 24 * time.Hour},
		{"@every 1h", "@every 1h0m0s", "UTC", time.Hour},
		{"@every 1h 30m", "@every 1h30m0s", "UTC", 90 * time.Minute},
		{"TZ=Asia/Tokyo @every 10s", "CRON_TZ=Asia/Tokyo @every 10s", "Asia/Tokyo", 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := s.Location().String(); got != tt.zone {
				t.Errorf("Location() = %q, want %q", got, tt.zone)
			}
			if got := s.Interval(); got != tt.interval {
				t.Errorf("Interval() = %v, want %v", got, tt.interval)
			}
			again, err := Parse(s.String())
			if err != nil {
				t.Fatalf("Parse(String()): %v", err)
			}
			if !equivalent(s, again) {
				t.Errorf("Parse(%q) differs from Parse(%q)", s.String(), tt.spec)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, spec := range []string{"", " ", "\t\n"} {
		s, err := Parse(spec)
		if s != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", spec, s, err)
		}
	}
	// A nil schedule is safe to use.
	var s *Schedule
	if s.String() != "" || s.Location() != time.UTC || s.Interval() != 0 ||
		!s.Next(time.Now()).IsZero() || s.NextN(time.Now(), 3) != nil {
		t.Error("nil Schedule methods do not return their zero answers")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec string
		want []string // substrings of the error
	}{
		{"02:00 XYZ", []string{`unknown time zone "XYZ"`, "America/Los_Angeles", "PDT", "IST", "NZDT"}},
		{"2:00 am", []string{"times are 24-hour, without am or pm: 02:00 for 2 am, 14:00 for 2 pm"}},
		{"2:00 PM", []string{"times are 24-hour"}},
		{"02:00 CST6", []string{`unknown time zone "CST6"`}},
		{"02:00 CST6CDT", []string{`unknown time zone "CST6CDT"`}},
		{"02:00 Local", []string{`unknown time zone "Local"`}},
		{"02:00 Mars/Olympus_Mons", []string{`unknown time zone "Mars/Olympus_Mons"`}},
		{"02:00 america/los_angeles", []string{`unknown time zone "america/los_angeles"`}},
		{"02:00 AST", []string{`"AST" is ambiguous`, "America/Halifax", "Asia/Riyadh"}},
		{"24:00", []string{`time "24:00": hour 24 out of range 0-23`}},
		{"25:00 UTC", []string{`time "25:00": hour 25`}},
		{"2:60 UTC", []string{`time "2:60": minute 60 out of range 0-59`}},
		{"2:5 UTC", []string{`time "2:5": want HH:MM`}},
		{"002:00 UTC", []string{`time "002:00": want HH:MM`}},
		{"02:00:00 UTC", []string{`time "02:00:00": want HH:MM`}},
		{"2:00pm UTC", []string{`time "2:00pm"`}},
		{"02:00,2:00 UTC", []string{`time "2:00" repeats "02:00"`}},
		{"02:00,,03:00", []string{`empty time in list "02:00,,03:00"`}},
		{"02:00, UTC", []string{"empty time in list"}},
		{"02:00 14:00 UTC", []string{`time "02:00 14:00"`, "separated by commas"}},
		{"02:00 America/Los Angeles", []string{`unknown time zone "Angeles"`}},
		{"CRON_TZ=Europe/Berlin 02:00", []string{"CRON_TZ= goes with cron expressions", `"02:00 Europe/Berlin"`}},
		{"CRON_TZ= 0 * * * *", []string{"CRON_TZ= names no time zone"}},
		{"CRON_TZ=Europe/Berlin", []string{"no cron expression after CRON_TZ=Europe/Berlin"}},
		{"TZ=XYZ 0 * * * *", []string{`unknown time zone "XYZ"`}},
		{"hello", []string{"cron expression has 1 fields", "daily times"}},
		{"0 2 * *", []string{"cron expression has 4 fields"}},
		{"0 0 2 * * * *", []string{"cron expression has 7 fields"}},
		{"0 25 * * *", []string{`hour "25": 25 out of range 0-23`}},
		{"60 * * * *", []string{`minute "60": 60 out of range 0-59`}},
		{"61 0 * * * *", []string{`second "61"`}},
		{"0 0 0 * *", []string{`day-of-month "0": 0 out of range 1-31`}},
		{"0 0 * 13 *", []string{`month "13"`}},
		{"0 0 * * 8", []string{`day-of-week "8": 8 out of range 0-7`}},
		{"0 0 * * FUN", []string{`day-of-week "FUN": "FUN" is not a number or a name`}},
		{"x * * * *", []string{`minute "x": "x" is not a number`}},
		{"*/0 * * * *", []string{`minute "*/0": step "0"`}},
		{"*/x * * * *", []string{`step "x"`}},
		{"*/-1 * * * *", []string{`step "-1"`}},
		{"5-1 * * * *", []string{`range "5-1" runs backwards`}},
		{"1,,2 * * * *", []string{`minute "1,,2": empty list element`}},
		{"-1 * * * *", []string{`minute "-1"`}},
		{"99999999999999999999 * * * *", []string{"out of range 0-59"}},
		{"0 0 L * *", []string{`day-of-month "L"`}},
		{"0 0 30 2 *", []string{"never runs"}},
		{"0 0 31 4,6,9,11 *", []string{"never runs"}},
		{"@reboot", []string{`unknown descriptor "@reboot"`}},
		{"@every", []string{"@every"}},
		{"@every 0s", []string{"at least 1s"}},
		{"@every 1500ms", []string{"whole number of seconds"}},
		{"@every -1h", []string{"at least 1s"}},
		{"@every soon", []string{"@every: time: invalid duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want an error", tt.spec, s)
			}
			if s != nil {
				t.Errorf("Parse(%q) returned a schedule with its error", tt.spec)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, fmt.Sprintf("schedule %q: ", tt.spec)) {
				t.Errorf("error %q does not start by naming the spec", msg)
			}
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestAbbreviations(t *testing.T) {
	abbr := Abbreviations()
	want := map[string]string{
		"PDT": "America/Los_Angeles", "PST": "America/Los_Angeles", "PT": "America/Los_Angeles",
		"MDT": "America/Denver", "MST": "America/Denver",
		"CDT": "America/Chicago", "CST": "America/Chicago",
		"EDT": "America/New_York", "EST": "America/New_York", "ET": "America/New_York",
		"UTC": "UTC", "GMT": "UTC", "Z": "UTC",
		"BST": "Europe/London", "CET": "Europe/Paris", "CEST": "Europe/Paris",
		"EET": "Europe/Athens", "EEST": "Europe/Athens",
		"JST": "Asia/Tokyo", "KST": "Asia/Seoul", "IST": "Asia/Kolkata",
		"AEST": "Australia/Sydney", "AEDT": "Australia/Sydney",
		"NZST": "Pacific/Auckland", "NZDT": "Pacific/Auckland",
		"SGT": "Asia/Singapore", "HKT": "Asia/Hong_Kong", "BRT": "America/Sao_Paulo",
	}
	for a, zone := range want {
		if abbr[a] != zone {
			t.Errorf("Abbreviations()[%q] = %q, want %q", a, abbr[a], zone)
		}
	}
	for a, zone := range abbr {
		if a != strings.ToUpper(a) {
			t.Errorf("abbreviation %q is not upper case", a)
		}
		if _, err := time.LoadLocation(zone); err != nil {
			t.Errorf("%s: %v", a, err)
		}
		s, err := Parse("02:00 " + a)
		if err != nil {
			t.Errorf("Parse(02:00 %s): %v", a, err)
		} else if s.Location().String() != zone {
			t.Errorf("02:00 %s is in %s, want %s", a, s.Location(), zone)
		}
	}
	for a := range ambiguous {
		if _, ok := abbr[a]; ok {
			t.Errorf("%s is both accepted and ambiguous", a)
		}
	}
	abbr["PDT"] = "Mars/Base"
	if Abbreviations()["PDT"] != "America/Los_Angeles" {
		t.Error("Abbreviations returns the package's own map")
	}
}

// equivalent reports whether two schedules run at the same times with the
// same canonical form.
func equivalent(a, b *Schedule) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.loc.String() != b.loc.String() || a.String() != b.String() ||
		a.kind != b.kind || a.cron != b.cron || a.every != b.every || a.interval != b.interval ||
		len(a.daily) != len(b.daily) {
		return false
	}
	for i := range a.daily {
		if a.daily[i] != b.daily[i] {
			return false
		}
	}
	return true
}
