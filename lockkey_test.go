package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage/file"
)

// TestStorageLocationResolvesSymlinks: two spellings of one directory,
// through a symlink, are one backup lock; a capture given one and a prune
// given the other ran side by side.
func TestStorageLocationResolvesSymlinks(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "backups")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	a, err := file.New(real)
	if err != nil {
		t.Fatal(err)
	}
	b, err := file.New(link)
	if err != nil {
		t.Fatal(err)
	}
	if la, lb := storageLocation(a, real), storageLocation(b, "file://"+link+"/"); la != lb {
		t.Errorf("one directory, two lock locations: %q and %q", la, lb)
	}
	other, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if storageLocation(other, "") == storageLocation(a, "") {
		t.Error("two directories share a lock location")
	}
}

// TestSameDayRetention: a schedule of several runs a day with KEEP_LAST 0
// is warned about at start-up (each backup's retention deleted the one
// before it that day); a daily schedule, or KEEP_LAST set, is not.
func TestSameDayRetention(t *testing.T) {
	for _, tc := range []struct {
		sched string
		keep  int
		warn  bool
	}{
		{"0 * * * *", 0, true},
		{"0 2,14 * * *", 0, true},
		{"0 * * * *", 24, false},
		{"02:00 America/Los_Angeles", 0, false},
		{"0 2 * * *", 0, false},
	} {
		s, err := schedule.Parse(tc.sched)
		if err != nil {
			t.Fatal(err)
		}
		w := sameDayRetention(s, schedule.Policy{KeepLast: tc.keep, KeepDaily: 7})
		if (w != "") != tc.warn || tc.warn && !strings.Contains(w, "PGBACKUPS_KEEP_LAST") {
			t.Errorf("%q with KEEP_LAST=%d: warning %q, want one: %v", tc.sched, tc.keep, w, tc.warn)
		}
	}
}
