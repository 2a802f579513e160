package main

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"time"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/schedule"
)

// schedulesCommand shows what the daemon makes of PGBACKUPS_SCHEDULE. Like
// healthcheck it reads that one variable, not the whole configuration: it
// is a tool for getting the schedule right, and needs no database or
// storage.
var schedulesCommand = command{
	name:    "schedules",
	args:    "[--next N] [--after TIME] [SPEC]",
	summary: "show PGBACKUPS_SCHEDULE (or SPEC) parsed: its time zone and next run times",
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		n := fs.Int("next", 5, "how many upcoming runs to list (`N`, 0 to 1000)")
		after := fs.String("after", "", "list runs after this RFC 3339 `TIME` (such as 2026-03-08T00:00:00-08:00) instead of now")
		pos, err := m.parseFlags(fs, args, 1)
		if err != nil {
			return err
		}
		if *n < 0 || *n > 1000 {
			return usagef("--next %d: want 0 to 1000", *n)
		}
		from := time.Now()
		if *after != "" {
			if from, err = time.Parse(time.RFC3339, *after); err != nil {
				return usagef("--after %q: want an RFC 3339 time such as 2026-03-08T00:00:00-08:00", *after)
			}
		}
		name, spec := scheduleFromEnv()
		if len(pos) == 1 {
			name, spec = "SPEC", pos[0]
		}
		s, err := schedule.Parse(spec)
		if err != nil {
			if name == "SPEC" {
				return usagef("%v", err)
			}
			return configError{config.Errors{{Var: name, Err: err}}}
		}
		if s == nil {
			fmt.Fprintf(m.Stdout, "no schedule: %s is unset, so the daemon runs no backups (it still serves /healthz and /metrics)\n", name)
			return nil
		}
		printSchedule(m, s, from, *n)
		return nil
	},
}

func printSchedule(m *Main, s *schedule.Schedule, from time.Time, n int) {
	loc := s.Location()
	abbr, off := from.In(loc).Zone()
	fmt.Fprintf(m.Stdout, "schedule:    %s\n", s)
	fmt.Fprintf(m.Stdout, "time zone:   %s (%s, UTC%s at %s)\n", loc, abbr, utcOffset(off), from.In(loc).Format(time.RFC3339))
	fmt.Fprintf(m.Stdout, "longest gap: %s (an upper bound that allows for a daylight-saving fall-back)\n", s.Interval())
	fmt.Fprintln(m.Stdout, "overdue:     /healthz says so when the run due after the last success has not succeeded within PGBACKUPS_HEALTH_GRACE of its time")
	if n == 0 {
		return
	}
	fmt.Fprintf(m.Stdout, "next %s:\n", plural(n, "run"))
	for _, t := range s.NextN(from, n) {
		fmt.Fprintf(m.Stdout, "  %s  %s %s\n", t.Format(time.RFC3339), t.Format("Mon"), t.Format("MST"))
	}
}

func utcOffset(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	return fmt.Sprintf("%s%02d:%02d", sign, sec/3600, sec%3600/60)
}

// scheduleFromEnv returns PGBACKUPS_SCHEDULE's name and value.
func scheduleFromEnv() (name, spec string) {
	f, _ := reflect.TypeOf(config.Config{}).FieldByName("Schedule")
	name = config.VarName(f)
	return name, os.Getenv(name)
}
