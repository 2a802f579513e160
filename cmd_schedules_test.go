package main

import (
	"strings"
	"testing"
	"time"
)

func TestSchedulesCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		code  int
		want  []string // in order, in stdout (or stderr for errors)
		avoid string
	}{
		{
			name: "spring forward runs once at the first valid instant",
			env:  []string{"PGBACKUPS_SCHEDULE=02:30 PDT"},
			args: []string{"--next", "3", "--after", "2026-03-07T12:00:00Z"},
			want: []string{
				"schedule:    02:30 America/Los_Angeles",
				"time zone:   America/Los_Angeles (PST, UTC-08:00 at 2026-03-07T04:00:00-08:00)",
				"longest gap: 25h0m0s",
				"next 3 runs:",
				"  2026-03-08T03:00:00-07:00  Sun PDT\n", // 02:30 does not exist that day
				"  2026-03-09T02:30:00-07:00  Mon PDT\n",
			},
		},
		{
			name: "fall back runs once",
			env:  []string{"PGBACKUPS_SCHEDULE=01:30 America/Los_Angeles"},
			args: []string{"--next", "2", "--after", "2026-11-01T00:00:00-07:00"},
			want: []string{"  2026-11-01T01:30:00-07:00  Sun PDT\n", "  2026-11-02T01:30:00-08:00  Mon PST\n"},
		},
		{
			name: "cron with seconds from the argument",
			args: []string{"--next", "3", "--after", "2026-01-01T00:00:01Z", "*/5 * * * * *"},
			want: []string{"schedule:    */5 * * * * *", "time zone:   UTC", "longest gap: 5s", "  2026-01-01T00:00:05Z  Thu UTC\n", "  2026-01-01T00:00:10Z", "  2026-01-01T00:00:15Z"},
		},
		{
			name: "cron with CRON_TZ",
			args: []string{"--next", "1", "--after", "2026-07-01T00:00:00Z", "CRON_TZ=Europe/Berlin 0 3 * * *"},
			want: []string{"schedule:    CRON_TZ=Europe/Berlin 0 3 * * *", "  2026-07-01T03:00:00+02:00  Wed CEST\n"},
		},
		{
			// /healthz counts from the run after the last success (12h
			// here), not from the longest gap plus the fall-back (13h).
			name: "the overdue rule",
			args: []string{"--next", "2", "--after", "2026-07-01T00:00:00Z", "02:00,14:00 Europe/Berlin"},
			want: []string{
				"longest gap: 13h0m0s",
				"overdue:     /healthz says so when the run due after the last success has not succeeded within PGBACKUPS_HEALTH_GRACE of its time\n",
				"  2026-07-01T14:00:00+02:00  Wed CEST\n",
			},
			avoid: "after this plus",
		},
		{
			name: "unset",
			code: exitOK,
			want: []string{"no schedule: PGBACKUPS_SCHEDULE is unset"},
		},
		{
			name:  "bad variable",
			env:   []string{"PGBACKUPS_SCHEDULE=02:00 XYZ"},
			code:  exitUsage,
			want:  []string{"PGBACKUPS_SCHEDULE", "XYZ"},
			avoid: "usage:",
		},
		{
			name: "bad argument",
			args: []string{"61 * * * *"},
			code: exitUsage,
			want: []string{"pgbackups schedules: schedule \"61 * * * *\"", "usage: pgbackups schedules"},
		},
		{
			name: "bad --after",
			args: []string{"--after", "tomorrow"},
			code: exitUsage,
			want: []string{"--after \"tomorrow\""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.env, append([]string{"schedules"}, tc.args...)...)
			out := r.stdout + r.stderr
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, out)
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			if tc.avoid != "" && strings.Contains(out, tc.avoid) {
				t.Errorf("output has %q:\n%s", tc.avoid, out)
			}
		})
	}
}

// TestSchedulesNextRunsAreRFC3339: every listed run parses, in order.
func TestSchedulesNextRunsAreRFC3339(t *testing.T) {
	r := run(t, []string{"PGBACKUPS_SCHEDULE=02:00,14:00 CET"}, "schedules", "--next", "20")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var prev time.Time
	n := 0
	for _, line := range strings.Split(r.stdout, "\n") {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		ts, err := time.Parse(time.RFC3339, strings.Fields(line)[0])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if !ts.After(prev) || !ts.After(time.Now()) {
			t.Errorf("%s is not after %s and now", ts, prev)
		}
		if h := ts.Hour(); h != 2 && h != 14 {
			t.Errorf("%s is not at 02:00 or 14:00 Paris time", ts)
		}
		prev = ts
		n++
	}
	if n != 20 {
		t.Errorf("%d runs listed, want 20", n)
	}
}

// TestDaemonRejectsBadSchedule: the daemon refuses to start on a schedule
// it cannot parse, naming the variable, before touching the database.
func TestDaemonRejectsBadSchedule(t *testing.T) {
	r := run(t, []string{"PGBACKUPS_SCHEDULE=25:00", "PGBACKUPS_STORAGE_URL=" + t.TempDir(), "PGBACKUPS_HTTP_ADDR=127.0.0.1:0"})
	if r.code != exitUsage || !strings.Contains(r.stderr, "PGBACKUPS_SCHEDULE") || !strings.Contains(r.stderr, "hour 25") {
		t.Fatalf("no command, bad schedule: exit %d\n%s", r.code, r.stderr)
	}
}
