package dump

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBlockedBy(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name     string
		rows     []activity
		wantDump []int
		want     []string // "pid direct waiting"
	}{
		{name: "no dump backend", rows: []activity{{PID: 2, Blockers: []int{1}}}},
		{name: "nothing blocked", rows: []activity{{PID: 1, IsDump: true}, {PID: 2, Blockers: []int{9}, Waited: s}}, wantDump: []int{1}},
		{
			name: "migration and the queue behind it",
			rows: []activity{
				{PID: 1, IsDump: true},
				{PID: 3, Blockers: []int{2}, Waited: 2 * s},    // app query behind the ALTER
				{PID: 2, Blockers: []int{1}, Waited: 5 * s},    // ALTER TABLE waiting for the dump
				{PID: 4, Blockers: []int{3, 2}, Waited: 1 * s}, // behind both
				{PID: 5, Blockers: []int{6}, Waited: 9 * s},    // waits on something else
				{PID: 6},
			},
			wantDump: []int{1},
			want:     []string{"2 true 5s", "3 false 2s", "4 false 1s"},
		},
		{
			name: "chain listed before its head",
			rows: []activity{
				{PID: 10, Blockers: []int{11}, Waited: s},
				{PID: 11, Blockers: []int{12}, Waited: s},
				{PID: 12, Blockers: []int{7}, Waited: s},
				{PID: 7, IsDump: true},
			},
			wantDump: []int{7},
			want:     []string{"10 false 1s", "11 false 1s", "12 true 1s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dump, blocked := blockedBy(tc.rows)
			if !slices.Equal(dump, tc.wantDump) {
				t.Errorf("dump = %v, want %v", dump, tc.wantDump)
			}
			var got []string
			for _, b := range blocked {
				got = append(got, fmt.Sprintf("%d %v %s", b.PID, b.Direct, b.Waiting))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("blocked = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBlockingErrorMessage(t *testing.T) {
	e := &BlockingError{Backend: 100, Threshold: 10 * time.Second, Blocked: []BlockedSession{
		{PID: 2, BlockedBy: []int{100}, Direct: true, Waiting: 12300 * time.Millisecond, Query: "ALTER TABLE app.users ADD COLUMN x int"},
		{PID: 3, BlockedBy: []int{2}, Waiting: 5 * time.Second, Query: strings.Repeat("SELECT 1 ", 50)},
		{PID: 4, BlockedBy: []int{2}, Waiting: time.Second, Query: "SELECT 2"},
		{PID: 5, BlockedBy: []int{2}, Waiting: time.Second, Query: "SELECT 3"},
	}}
	var err error = fmt.Errorf("backup x: aborted: %w", e)
	var be *BlockingError
	if !errors.As(err, &be) || be.Backend != 100 {
		t.Fatal("errors.As does not find the *BlockingError")
	}
	msg := err.Error()
	for _, want := range []string{"backend pid 100", "blocked 4 session", "PGBACKUPS_BLOCKING_THRESHOLD=10s", "PGBACKUPS_ON_BLOCKING=abort",
		`pid 2 waited 12.3s on the dump: "ALTER TABLE app.users ADD COLUMN x int"`, "pid 3 waited 5s queued behind pid 2", "…", "and 1 more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestStatementHeadHidesLiterals(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ALTER TABLE events\n   ADD COLUMN x int", "ALTER TABLE events ADD COLUMN x int"},
		{"UPDATE users SET token = 'abc' WHERE id = 7", "UPDATE users SET token …"},
		{"UPDATE users SET token=$1 WHERE id=$2", "UPDATE users SET …"},
		{"SELECT * FROM t22919_1 WHERE id = 42", "SELECT * FROM t22919_1 WHERE id …"},
		{"SELECT * FROM t WHERE name <> bob", "SELECT * FROM t WHERE name …"},
		{"-- ticket for Jane Doe jane@corp.example\nDELETE FROM t WHERE id = 5", "…"},
		{"DELETE FROM t /* user alice@example.com */ WHERE id = 5", "DELETE FROM t …"},
		{"DELETE FROM t--alice\nWHERE x", "DELETE FROM …"},
		{"SET app.api_key TO abcdefsecret", "SET app.api_key …"},
		{"ALTER ROLE app SET search_path = myschema", "ALTER ROLE app SET search_path …"},
		{"'secret' || x", "…"},
		{"SELECT * FROM t WHERE id=42", "SELECT * FROM t WHERE …"},
		{"DO $$BEGIN PERFORM 1; END$$", "DO …"},
		{"INSERT INTO t (a, b) VALUES (E'secret', -3.5)", "INSERT INTO t (a, b) VALUES …"},
		{"select 1 from a join b using (c) join d using (e) join f using (g)", "select …"},
		{"lock table a in access exclusive mode nowait and more words here please", "lock table a in access exclusive mode nowait and more words here …"},
		{"", ""},
	} {
		if got := statementHead(tc.in); got != tc.want {
			t.Errorf("statementHead(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
