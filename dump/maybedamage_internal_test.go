package dump

import "testing"

// TestMayBeDamage: only what a damaged archive causes makes a restore read
// the rest of the backup before answering (hours, on a large one); a
// refused statement, a refused connection or pg_restore killed is answered
// at once.
func TestMayBeDamage(t *testing.T) {
	for stderr, want := range map[string]bool{
		`pg_restore: error: input file does not appear to be a valid archive`:                                               true,
		`pg_restore: error: COPY failed for table "users": ERROR:  missing data for column "name"`:                          true,
		`pg_restore: error: could not execute query: ERROR:  syntax error at or near "CREATE TALBE"`:                        true,
		`pg_restore: error: out of memory`:                                                                                  true,
		`pg_restore: error: could not execute query: ERROR:  role "app" does not exist`:                                     false,
		`pg_restore: error: could not execute query: ERROR:  schema "app" already exists`:                                   false,
		`pg_restore: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already`: false,
		``: false, // killed without a word
	} {
		if got := mayBeDamage(stderr); got != want {
			t.Errorf("mayBeDamage(%q) = %v, want %v", stderr, got, want)
		}
	}
}
