package dump

import (
	"fmt"

	"github.com/pgbackups/pgbackups/config"
)

// SizeWarning is the warning for a database of sizeBytes when the logical
// limit (PGBACKUPS_LOGICAL_LIMIT) is limit, or "" when it fits or limit is
// 0. Capture logs it and records it in the manifest's Warnings; the daemon
// exposes OverLogicalLimit in health and metrics.
//
// A logical dump holds one snapshot from its first row to its last: on a
// big database that is hours during which vacuum cannot remove rows deleted
// after the snapshot was taken, so tables and indexes bloat. Physical
// backups with WAL archiving (pgBackRest, WAL-G, barman) copy files instead
// and hold nothing back.
func SizeWarning(sizeBytes, limit int64) string {
	if !OverLogicalLimit(sizeBytes, limit) {
		return ""
	}
	return fmt.Sprintf("database is %s, over PGBACKUPS_LOGICAL_LIMIT=%s: a logical dump this size holds a snapshot (and holds back vacuum) for its whole duration; use physical backups with WAL archiving (pgBackRest, WAL-G, barman) for it",
		config.HumanBytes(sizeBytes), config.HumanBytes(limit))
}

// OverLogicalLimit reports whether a database of sizeBytes is over limit;
// a limit of 0 disables the guard.
func OverLogicalLimit(sizeBytes, limit int64) bool { return limit > 0 && sizeBytes > limit }
