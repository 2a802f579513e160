package schedule

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// backups builds backups from lines "ID TIME [failed]", where TIME is
// RFC 3339 or, without an offset, a wall-clock time in loc.
func backups(t *testing.T, loc *time.Location, lines ...string) []Backup {
	t.Helper()
	var out []Backup
	for _, line := range lines {
		f := strings.Fields(line)
		at, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			if at, err = time.ParseInLocation("2006-01-02T15:04", f[1], loc); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
		out = append(out, Backup{ID: f[0], Time: at, OK: len(f) < 3 || f[2] != "failed"})
	}
	return out
}

func ids(bs []Backup) string {
	var out []string
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return strings.Join(out, " ")
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		zone    string
		backups []string
		keep    string // IDs, newest first
		reasons map[string]string
	}{
		{name: "empty", policy: DefaultPolicy(), zone: "UTC"},
		{
			name: "all counts zero keep the newest good", zone: "UTC",
			backups: []string{"a 2026-01-01T02:00", "b 2026-01-02T02:00", "c 2026-01-03T02:00"},
			keep:    "c",
			reasons: map[string]string{"c": "newest"},
		},
		{
			name: "keep last", policy: Policy{KeepLast: 3}, zone: "UTC",
			backups: []string{"a 2026-01-01T02:00", "b 2026-01-01T03:00", "c 2026-01-01T04:00", "d 2026-01-01T05:00", "e 2026-01-01T06:00"},
			keep:    "e d c",
			reasons: map[string]string{"e": "last newest", "d": "last", "c": "last"},
		},
		{
			name: "keep last more than there are", policy: Policy{KeepLast: 10}, zone: "UTC",
			backups: []string{"a 2026-01-01T02:00", "b 2026-01-01T03:00"},
			keep:    "b a",
		},
		{
			name: "newest of each day", policy: Policy{KeepDaily: 2}, zone: "UTC",
			backups: []string{
				"d1a 2026-01-01T02:00", "d1b 2026-01-01T14:00",
				"d2a 2026-01-02T02:00", "d2b 2026-01-02T14:00", "d2c 2026-01-02T23:59",
				"d3a 2026-01-03T00:00",
			},
			keep:    "d3a d2c",
			reasons: map[string]string{"d3a": "daily newest", "d2c": "daily"},
		},
		{
			name: "days without backups are not counted", policy: Policy{KeepDaily: 3}, zone: "UTC",
			backups: []string{"a 2026-01-01T02:00", "b 2026-01-02T02:00", "c 2026-01-05T02:00", "d 2026-01-09T02:00", "e 2026-01-10T02:00"},
			keep:    "e d c",
		},
		{
			name: "days are read in the zone", policy: Policy{KeepDaily: 2}, zone: "America/Los_Angeles",
			// All three are on 2026-01-11 in UTC; b is still the 10th in Los Angeles.
			backups: []string{"a 2026-01-10T22:00", "b 2026-01-10T23:30", "c 2026-01-11T00:30"},
			keep:    "c b",
		},
		{
			name: "the same backups by UTC days", policy: Policy{KeepDaily: 2}, zone: "UTC",
			backups: []string{"a 2026-01-11T06:00:00Z", "b 2026-01-11T07:30:00Z", "c 2026-01-11T08:30:00Z"},
			keep:    "c",
		},
		{
			name: "spring forward day", policy: Policy{KeepDaily: 2}, zone: "America/Los_Angeles",
			backups: []string{
				"sat 2026-03-07T23:30:00-08:00",
				"sun1 2026-03-08T00:30:00-08:00", "sun2 2026-03-08T01:59:00-08:00", "sun3 2026-03-08T03:00:00-07:00", "sun4 2026-03-08T23:59:00-07:00",
				"mon 2026-03-09T00:00:00-07:00",
			},
			keep: "mon sun4",
		},
		{
			name: "fall back day, repeated hour", policy: Policy{KeepDaily: 2}, zone: "America/Los_Angeles",
			backups: []string{
				"sat 2026-10-31T23:30:00-07:00",
				"sun1 2026-11-01T01:30:00-07:00", "sun2 2026-11-01T01:10:00-08:00", "sun3 2026-11-01T01:40:00-08:00",
			},
			keep: "sun3 sat",
		},
		{
			name: "fall back at midnight", policy: Policy{KeepDaily: 2}, zone: "America/Santiago",
			// Chile: 2026-04-05 00:00 -03 becomes 2026-04-04 23:00 -04.
			backups: []string{
				"apr4a 2026-04-04T22:00:00-03:00", "apr4b 2026-04-04T23:30:00-03:00", "apr4c 2026-04-04T23:10:00-04:00",
				"apr5 2026-04-05T00:10:00-04:00", "apr3 2026-04-03T12:00:00-03:00",
			},
			keep: "apr5 apr4c",
		},
		{
			name: "ISO weeks across the year end", policy: Policy{KeepWeekly: 3}, zone: "UTC",
			// 2026-W52 ends Sunday Dec 27; W53 runs Dec 28 to Jan 3; 2027-W01 starts Monday Jan 4.
			backups: []string{"w52 2026-12-27T12:00", "w53a 2026-12-29T12:00", "w53b 2027-01-03T12:00", "w01 2027-01-04T12:00"},
			keep:    "w01 w53b w52",
		},
		{
			name: "weeks start on Monday in the zone", policy: Policy{KeepWeekly: 2}, zone: "Europe/Berlin",
			// Monday 00:30 in Berlin is still Sunday in UTC.
			backups: []string{"sun 2026-03-01T12:00", "mon 2026-03-02T00:30", "tue 2026-03-03T12:00"},
			keep:    "tue sun",
		},
		{
			name: "months", policy: Policy{KeepMonthly: 3}, zone: "UTC",
			backups: []string{
				"jan 2026-01-31T12:00", "feb1 2026-02-01T12:00", "feb2 2026-02-28T12:00",
				"apr 2026-04-15T12:00", "may1 2026-05-01T00:00", "may2 2026-05-02T00:00",
			},
			keep: "may2 apr feb2",
		},
		{
			name: "rules overlap, each picks on its own", policy: Policy{KeepLast: 2, KeepDaily: 3, KeepWeekly: 3, KeepMonthly: 2}, zone: "UTC",
			backups: []string{
				"a 2026-01-20T02:00", "b 2026-02-20T02:00", "c 2026-02-25T02:00", "d 2026-03-01T02:00",
				"e 2026-03-02T02:00", "f 2026-03-02T14:00",
			},
			keep: "f e d c b",
			reasons: map[string]string{
				"f": "last daily weekly monthly newest", "e": "last", "d": "daily weekly",
				"c": "daily monthly", "b": "weekly",
			},
		},
		{
			name: "failed only: nothing removed", policy: DefaultPolicy(), zone: "UTC",
			backups: []string{"a 2026-01-01T02:00 failed", "b 2026-01-02T02:00 failed"},
			keep:    "b a",
			reasons: map[string]string{"a": "failed", "b": "failed"},
		},
		{
			name: "failed backups around the newest good one", policy: Policy{KeepLast: 1}, zone: "UTC",
			backups: []string{
				"old-fail 2026-01-01T02:00 failed", "good1 2026-01-02T02:00", "mid-fail 2026-01-03T02:00 failed",
				"good2 2026-01-04T02:00", "new-fail1 2026-01-05T02:00 failed", "new-fail2 2026-01-06T02:00 failed",
			},
			keep:    "new-fail2 new-fail1 good2",
			reasons: map[string]string{"new-fail2": "failed", "new-fail1": "failed", "good2": "last newest"},
		},
		{
			name: "a failed backup does not take its day", policy: Policy{KeepDaily: 2}, zone: "UTC",
			backups: []string{
				"d1 2026-01-01T02:00", "d2good 2026-01-02T02:00", "d2fail 2026-01-02T14:00 failed",
				"d3good 2026-01-03T02:00", "d3fail 2026-01-03T14:00 failed",
			},
			keep: "d3fail d3good d2good",
		},
		{
			name: "unsorted input", policy: Policy{KeepDaily: 3}, zone: "UTC",
			backups: []string{"c 2026-01-03T02:00", "a 2026-01-01T02:00", "e 2026-01-05T02:00", "b 2026-01-02T02:00", "d 2026-01-04T02:00"},
			keep:    "e d c",
		},
		{
			name: "ties are ordered by ID", policy: Policy{KeepLast: 1}, zone: "UTC",
			backups: []string{"b 2026-01-01T02:00", "a 2026-01-01T02:00", "c 2026-01-01T02:00"},
			keep:    "a",
		},
		{
			name: "negative counts keep nothing extra", policy: Policy{KeepLast: -1, KeepDaily: -5}, zone: "UTC",
			backups: []string{"a 2026-01-01T02:00", "b 2026-01-02T02:00"},
			keep:    "b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := time.LoadLocation(tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			in := backups(t, loc, tt.backups...)
			orig := slices.Clone(in)
			keep, remove := tt.policy.Apply(in, loc)
			if got := ids(keep); got != tt.keep {
				t.Errorf("keep %q, want %q", got, tt.keep)
			}
			if !slices.Equal(in, orig) {
				t.Error("Apply modified its input")
			}
			checkPartition(t, in, keep, remove)
			for _, d := range tt.policy.Explain(in, loc) {
				want, ok := tt.reasons[d.ID]
				if got := strings.Join(d.Reasons, " "); ok && got != want {
					t.Errorf("%s kept for %q, want %q", d.ID, got, want)
				}
				if d.Keep != (len(d.Reasons) > 0) {
					t.Errorf("%s: Keep %v with reasons %q", d.ID, d.Keep, d.Reasons)
				}
			}
		})
	}
}

// checkPartition checks that keep and remove split in, each newest first.
func checkPartition(t *testing.T, in, keep, remove []Backup) {
	t.Helper()
	all := append(slices.Clone(keep), remove...)
	if len(all) != len(in) {
		t.Fatalf("kept %d and removed %d of %d", len(keep), len(remove), len(in))
	}
	for _, b := range in {
		if !slices.Contains(all, b) {
			t.Errorf("%s is neither kept nor removed", b.ID)
		}
	}
	for _, part := range [][]Backup{keep, remove} {
		if !slices.IsSortedFunc(part, func(a, b Backup) int { return b.Time.Compare(a.Time) }) {
			t.Errorf("%q is not newest first", ids(part))
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if p != (Policy{KeepDaily: 7, KeepWeekly: 4}) {
		t.Fatalf("DefaultPolicy() = %+v", p)
	}
	// Nightly backups for 60 days, from Thursday 2026-01-01 to Monday
	// 2026-03-01: the last 7 days, plus the newest of each of 4 ISO weeks,
	// the first of which (Mar 1) is also a daily.
	var in []Backup
	for d := range 60 {
		at := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC).AddDate(0, 0, d)
		in = append(in, Backup{ID: at.Format("01-02"), Time: at, OK: true})
	}
	keep, _ := p.Apply(in, time.UTC)
	want := "03-01 02-28 02-27 02-26 02-25 02-24 02-23 02-22 02-15 02-08"
	if got := ids(keep); got != want {
		t.Errorf("keep %q, want %q", got, want)
	}
}

// TestApplyProperties applies random policies to random backups.
func TestApplyProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	la, _ := time.LoadLocation("America/Los_Angeles")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		var in []Backup
		for j := range r.IntN(40) {
			in = append(in, Backup{
				ID:   fmt.Sprint(j),
				Time: base.Add(time.Duration(r.Int64N(int64(400 * 24 * time.Hour)))),
				OK:   r.IntN(4) != 0,
			})
		}
		p := Policy{KeepLast: r.IntN(4), KeepDaily: r.IntN(10), KeepWeekly: r.IntN(6), KeepMonthly: r.IntN(14)}
		keep, remove := p.Apply(in, la)
		checkPartition(t, in, keep, remove)

		var good []Backup
		for _, b := range in {
			if b.OK {
				good = append(good, b)
			}
		}
		if len(good) == 0 {
			if len(remove) != 0 {
				t.Errorf("case %d: removed %q with no good backup", i, ids(remove))
			}
			continue
		}
		newest := slices.MaxFunc(good, func(a, b Backup) int { return a.Time.Compare(b.Time) })
		if !slices.Contains(keep, newest) {
			t.Errorf("case %d: removed the newest good backup %s", i, newest.ID)
		}
		keptGood := 0
		for _, b := range keep {
			if b.OK {
				keptGood++
			} else if !b.Time.After(newest.Time) {
				t.Errorf("case %d: kept failed %s, older than the newest good", i, b.ID)
			}
		}
		if most := max(1, p.KeepLast+p.KeepDaily+p.KeepWeekly+p.KeepMonthly); keptGood > most {
			t.Errorf("case %d: kept %d good backups, rules allow %d", i, keptGood, most)
		}
		for _, b := range remove {
			if !b.OK && b.Time.After(newest.Time) {
				t.Errorf("case %d: removed failed %s, newer than the newest good", i, b.ID)
			}
		}
		// A rule asking for more keeps a superset.
		more := p
		more.KeepDaily++
		keepMore, _ := more.Apply(in, la)
		for _, b := range keep {
			if !slices.Contains(keepMore, b) {
				t.Errorf("case %d: KeepDaily+1 drops %s", i, b.ID)
			}
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Error(err)
	}
	err := Policy{KeepLast: -1, KeepMonthly: -2}.Validate()
	if err == nil || !strings.Contains(err.Error(), "KeepLast is -1") || !strings.Contains(err.Error(), "KeepMonthly is -2") {
		t.Errorf("Validate() = %v, want both negative fields named", err)
	}
}
