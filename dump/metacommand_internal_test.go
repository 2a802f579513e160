package dump

import "testing"

// TestPsqlMetaCommand: restore --with-globals feeds the globals to psql,
// which runs a meta-command in them (\! a shell command, on the restoring
// host). pg_dumpall writes none but \restrict and \unrestrict; a globals
// object changed in storage could.
func TestPsqlMetaCommand(t *testing.T) {
	for _, tc := range []struct {
		sql   string
		line  int
		found bool
	}{
		{"\\restrict abc123\nSET default_transaction_read_only = off;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x$y:z';\n\\unrestrict abc123\n", 0, false},
		{"CREATE ROLE \"we\\ird\";\nCOMMENT ON ROLE app IS 'a \\! b ''quoted'' \\x';\n-- \\! in a comment\n/* \\! /* nested */ still */ SELECT 1;\nSELECT $$ \\! $$, $t$ \\! $t$;\n", 0, false},
		{"CREATE ROLE app;\n\\! touch /tmp/owned\n", 2, true},
		{"CREATE ROLE app; \\! id\n", 1, true},
		{"COMMENT ON ROLE app IS 'x';\\! id\n", 1, true},
		{"SELECT 1; \\restrict abc\n", 1, true}, // not where pg_dumpall writes it
		{"CREATE ROLE \"x\"\"y\"; \\o /tmp/out\n", 1, true},
	} {
		line, head, found := psqlMetaCommand([]byte(tc.sql))
		if found != tc.found || line != tc.line {
			t.Errorf("%q: line %d %q found %v, want line %d found %v", tc.sql, line, head, found, tc.line, tc.found)
		}
	}
}
