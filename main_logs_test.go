package main

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDaemonLogLinesNameTheirComponent: with JSON logs, every line the
// daemon writes on its way to a failed start, its last word included, is
// a JSON object naming its component (what log pipelines filter on).
func TestDaemonLogLinesNameTheirComponent(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	store := t.TempDir()
	if err := os.Chmod(store, 0o777); err != nil { // the open-store warning
		t.Fatal(err)
	}
	r := run(t, []string{
		"PGBACKUPS_LOG_FORMAT=json",
		"PGBACKUPS_HTTP_ADDR=" + busy.Addr().String(), // taken: the daemon cannot serve /healthz
		"PGBACKUPS_STORAGE_URL=file://" + store,
		"PGBACKUPS_DATABASE_URL=postgres://app@127.0.0.1:1/app", // never reached
		"PGBACKUPS_SCHEDULE=0 */6 * * *",
		"PGBACKUPS_KEEP_LAST=0", // several runs a day: the start-up warning
	}, "daemon")
	if r.code != 1 {
		t.Fatalf("daemon with its HTTP address taken: exit %d, want 1\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	var msgs []string
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("not a JSON log line: %s", l)
			continue
		}
		msgs = append(msgs, rec["msg"].(string))
		if c, _ := rec["component"].(string); c == "" {
			t.Errorf("log line without a component: %s", l)
		}
	}
	if len(msgs) == 0 || msgs[len(msgs)-1] != "daemon stopped on an error" || !strings.Contains(lines[len(lines)-1], busy.Addr().String()) {
		t.Errorf("last line %q; want the daemon's fatal error naming the address %s", lines[len(lines)-1], busy.Addr())
	}
	for _, want := range []string{"retention keeps at most one backup a day", "the local store is open to every user"} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("no start-up warning %q:\n%s", want, r.stderr)
		}
	}
	// What it backs up and where to, said at start-up: a mistyped
	// variable that left the storage at its default shows there.
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, `"msg":"backing up"`) && strings.Contains(l, `"storage":"`+store+`"`) && strings.Contains(l, `database \"app\"`)
	}) {
		t.Errorf("no start-up line naming the database and the storage %s:\n%s", store, r.stderr)
	}
}
