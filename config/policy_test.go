package config

import (
	"strings"
	"testing"
)

// TestLoadApplyingRetentionRefusesAllKeepZero: KEEP_LAST, KEEP_DAILY, KEEP_WEEKLY and
// KEEP_MONTHLY all 0, which reads as "retention off" (0 turns
// STALL_TIMEOUT and BACKEND_NICE off), kept only the newest backup: each
// retention pass deleted every other one. It is refused, and the error
// says what to set instead. One count above 0 is a policy.
func TestLoadApplyingRetentionRefusesAllKeepZero(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // in the error; "" for none
		not  string // not in the error
	}{
		{name: "defaults"},
		{name: "only the newest, said so", env: map[string]string{"LAST": "1", "DAILY": "0", "WEEKLY": "0"}},
		{name: "monthly only", env: map[string]string{"DAILY": "0", "WEEKLY": "0", "MONTHLY": "12"}},
		{name: "all four 0", env: map[string]string{"LAST": "0", "DAILY": "0", "WEEKLY": "0", "MONTHLY": "0"},
			want: "PGBACKUPS_KEEP_LAST: 0, and so are PGBACKUPS_KEEP_DAILY, PGBACKUPS_KEEP_WEEKLY and PGBACKUPS_KEEP_MONTHLY"},
		{name: "daily and weekly 0, the others unset", env: map[string]string{"DAILY": "0", "WEEKLY": "0"},
			want: "set PGBACKUPS_KEEP_LAST=1"},
		// The 0 a value that does not parse leaves is not the user's:
		// its own error says what is wrong.
		{name: "weekly does not parse", env: map[string]string{"DAILY": "0", "WEEKLY": "four"},
			want: `PGBACKUPS_KEEP_WEEKLY: "four" is not a whole number`, not: "PGBACKUPS_KEEP_LAST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
			for k, v := range tc.env {
				t.Setenv("PGBACKUPS_KEEP_"+k, v)
			}
			if _, err := Load(); err != nil && strings.Contains(err.Error(), "PGBACKUPS_KEEP_LAST") {
				t.Fatalf("Load, for commands that apply no retention: %v", err)
			}
			_, err := LoadApplyingRetention()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load: %v; want an error saying %q", err, tc.want)
			case tc.not != "" && strings.Contains(err.Error(), tc.not):
				t.Fatalf("Load: %v; want nothing of %s", err, tc.not)
			}
		})
	}
}
