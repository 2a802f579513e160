package dump

import (
	"errors"
	"strings"
	"testing"
)

func TestRecoveryConflictAdvice(t *testing.T) {
	base := errors.New("pg_dump: exit status 1")
	if got := recoveryConflict(base, "pg_dump: error: Dumping the contents of table \"users\" failed: ERROR:  canceling statement due to conflict with recovery\nDETAIL:  User query might have needed to see row versions that must be removed."); !errors.Is(got, base) ||
		!strings.Contains(got.Error(), "max_standby_streaming_delay") || !strings.Contains(got.Error(), "hot_standby_feedback") {
		t.Errorf("cancelled by recovery: %v", got)
	}
	if got := recoveryConflict(base, "pg_dump: error: connection to server failed"); got != base {
		t.Errorf("unrelated failure changed: %v", got)
	}
}
