package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgbackups/pgbackups/storage"
)

// TestObjectTimeIsLastChange: an object's Modified, in List and in
// Temporaries, is the later of its mtime and its ctime. A copy that keeps
// times (cp -a, rsync -a) sets the mtime back to the source's, days old,
// and prune took a backup being copied in for a dead capture's leftovers.
func TestObjectTimeIsLastChange(t *testing.T) {
	ctx := context.Background()
	id := storage.NewID(time.Now())
	for _, tc := range []struct {
		name  string
		mtime time.Duration // from now
		temp  bool          // an unfinished write, listed by Temporaries
		// recent: Modified is within a minute of now (the ctime), else it
		// is the mtime.
		recent bool
	}{
		{name: "object whose copy kept a 10-day-old mtime", mtime: -10 * 24 * time.Hour, recent: true},
		{name: "temporary whose copy kept a 10-day-old mtime", mtime: -10 * 24 * time.Hour, temp: true, recent: true},
		{name: "object with an mtime ahead of its ctime", mtime: 48 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			key := storage.DataKey(id)
			if _, err := s.Put(ctx, key, strings.NewReader("data")); err != nil {
				t.Fatal(err)
			}
			p := s.Location(key)
			list := s.List
			if tc.temp {
				tmp := filepath.Join(filepath.Dir(p), tmpPrefix+filepath.Base(p)+"-1")
				if err := os.Rename(p, tmp); err != nil {
					t.Fatal(err)
				}
				p = tmp
				list = func(ctx context.Context, _ string) ([]storage.Object, error) { return s.Temporaries(ctx) }
			}
			mtime := time.Now().Add(tc.mtime).Truncate(time.Second)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			objs, err := list(ctx, "")
			if err != nil || len(objs) != 1 {
				t.Fatalf("listed %v, %v; want one object", objs, err)
			}
			got := objs[0].Modified
			if tc.recent && time.Since(got).Abs() > time.Minute || !tc.recent && !got.Equal(mtime) {
				t.Errorf("Modified %s, mtime %s: want the later of mtime and ctime (now)", got, mtime)
			}
		})
	}
}
