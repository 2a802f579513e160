package schedule

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The daemon's retention when none is configured: a week of dailies and a
// month of weeklies.
const (
	DefaultKeepDaily  = 7
	DefaultKeepWeekly = 4
)

// DefaultPolicy returns the policy the daemon uses when none is configured:
// KeepDaily 7, KeepWeekly 4.
func DefaultPolicy() Policy {
	return Policy{KeepDaily: DefaultKeepDaily, KeepWeekly: DefaultKeepWeekly}
}

// Policy is grandfather-father-son retention, as in restic's forget. Only
// good backups (OK) count; each rule picks on its own and a backup picked
// by any rule is kept (unlike borg, a backup one rule keeps still fills a
// slot of the others):
//
//   - KeepLast keeps the N newest good backups.
//   - KeepDaily keeps the newest good backup of each of the N most recent
//     calendar days, in the given location, that have one. Days without a
//     backup are skipped, not counted.
//   - KeepWeekly does the same for ISO weeks (Monday to Sunday), and
//     KeepMonthly for calendar months.
//
// The newest good backup is always kept, even when every count is 0.
// Failed backups never count toward a rule: those newer than the newest good
// backup are kept so an operator can see them, the others are removed. With
// no good backup at all, nothing is removed.
type Policy struct {
	KeepLast, KeepDaily, KeepWeekly, KeepMonthly int
}

// Validate reports negative counts.
func (p Policy) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		n    int
	}{{"KeepLast", p.KeepLast}, {"KeepDaily", p.KeepDaily}, {"KeepWeekly", p.KeepWeekly}, {"KeepMonthly", p.KeepMonthly}} {
		if f.n < 0 {
			errs = append(errs, fmt.Errorf("retention: %s is %d: want 0 or more", f.name, f.n))
		}
	}
	return errors.Join(errs...)
}

// Backup is what retention needs to know about one backup.
type Backup struct {
	ID   string
	Time time.Time
	OK   bool // false: the backup failed
}

// Why a Decision keeps a backup.
const (
	ReasonLast    = "last"    // one of the KeepLast newest
	ReasonDaily   = "daily"   // newest of one of the KeepDaily most recent days
	ReasonWeekly  = "weekly"  // newest of one of the KeepWeekly most recent ISO weeks
	ReasonMonthly = "monthly" // newest of one of the KeepMonthly most recent months
	ReasonNewest  = "newest"  // the newest good backup, never removed
	ReasonFailed  = "failed"  // a failed backup newer than every good one
)

// Decision is what a Policy does with one backup.
type Decision struct {
	Backup
	Keep    bool
	Reasons []string // why it is kept, in the order of the Reason constants; nil when removed
}

// Apply splits backups into those p keeps and those it removes, each newest
// first. Calendar days, weeks and months are read in loc (UTC if nil).
// backups is not modified and need not be sorted.
func (p Policy) Apply(backups []Backup, loc *time.Location) (keep, remove []Backup) {
	for _, d := range p.Explain(backups, loc) {
		if d.Keep {
			keep = append(keep, d.Backup)
		} else {
			remove = append(remove, d.Backup)
		}
	}
	return keep, remove
}

// Explain is Apply with a Decision for every backup, newest first, saying
// why each kept one is kept. Backups with equal times are ordered by ID.
func (p Policy) Explain(backups []Backup, loc *time.Location) []Decision {
	if loc == nil {
		loc = time.UTC
	}
	ds := make([]Decision, len(backups))
	for i, b := range backups {
		ds[i].Backup = b
	}
	slices.SortStableFunc(ds, func(a, b Decision) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	var good []int // indexes into ds, newest first
	for i := range ds {
		if ds[i].OK {
			good = append(good, i)
		}
	}
	keep := func(i int, why string) {
		ds[i].Keep = true
		if !slices.Contains(ds[i].Reasons, why) {
			ds[i].Reasons = append(ds[i].Reasons, why)
		}
	}

	for i := range min(max(p.KeepLast, 0), len(good)) {
		keep(good[i], ReasonLast)
	}
	perPeriod := func(n int, why string, period func(time.Time) int) {
		seen := map[int]bool{}
		for _, i := range good {
			if len(seen) >= n {
				return
			}
			// A set, not "differs from the previous": where a fall-back
			// crosses midnight, a calendar day comes round twice.
			k := period(ds[i].Time.In(loc))
			if !seen[k] {
				seen[k] = true
				keep(i, why)
			}
		}
	}
	perPeriod(p.KeepDaily, ReasonDaily, func(t time.Time) int {
		y, m, d := t.Date()
		return y*10000 + int(m)*100 + d
	})
	perPeriod(p.KeepWeekly, ReasonWeekly, func(t time.Time) int {
		y, w := t.ISOWeek()
		return y*100 + w
	})
	perPeriod(p.KeepMonthly, ReasonMonthly, func(t time.Time) int {
		return t.Year()*100 + int(t.Month())
	})

	if len(good) > 0 {
		keep(good[0], ReasonNewest)
	}
	for i := range ds {
		if !ds[i].OK && (len(good) == 0 || ds[i].Time.After(ds[good[0]].Time)) {
			keep(i, ReasonFailed)
		}
	}
	return ds
}
