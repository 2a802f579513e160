package dump

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/pgbackups/pgbackups/storage"
)

type statusError int

func (s statusError) Error() string       { return fmt.Sprintf("status %d", int(s)) }
func (s statusError) HTTPStatusCode() int { return int(s) }

// TestMayLand: a manifest write that failed keeps the backup's data only
// when the write may still land; a refusal left every failed attempt's
// whole dump in place until the next good backup.
func TestMayLand(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("put: %w", context.DeadlineExceeded), true},
		{context.Canceled, true},
		{fmt.Errorf("operation error S3: PutObject: %w", statusError(503)), true},
		{fmt.Errorf("operation error S3: PutObject: %w", statusError(403)), false},
		{fmt.Errorf("operation error S3: PutObject: %w", statusError(400)), false},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{fmt.Errorf("put: %w", storage.ErrNoSpace), false},
		{errors.New("manifest is over 16 MiB"), false},
	} {
		if got := mayLand(tc.err); got != tc.want {
			t.Errorf("mayLand(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
