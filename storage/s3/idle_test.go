package s3_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// age sets the modification time of VersityGW's folder for upload id,
// under data, to t: the upload's Initiated, as the server lists it. With
// parts, the files in it (each part's LastModified, as ListParts lists
// it) too.
func age(tb testing.TB, data, id string, t time.Time, parts bool) {
	tb.Helper()
	var found string
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		tb.Fatalf("no folder of upload %s under %s: VersityGW keeps uploads elsewhere now; find where", id, data)
	}
	if parts {
		entries, err := os.ReadDir(found)
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			if err := os.Chtimes(filepath.Join(found, e.Name()), t, t); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := os.Chtimes(found, t, t); err != nil {
		tb.Fatal(err)
	}
}

// TestPruneSparesUploadStillWriting: an upload that S3 says began longer
// ago than the grace, but whose latest part is fresh, belongs to a capture
// still streaming (a big database, a short grace): prune, which may run
// without the backup lock, leaves it alone. Uploads idle past the grace,
// with parts or none, go.
//
// VersityGW lists an upload's Initiated as its folder's mtime, which each
// part moves; AWS lists when the upload began. The test ages the folders
// to stand for AWS, and checks the server lists them so.
func TestPruneSparesUploadStillWriting(t *testing.T) {
	data := t.TempDir()
	srv := testenv.S3At(t, data)
	st := newStore(t, srv, "backups")
	now := time.Now()
	began := now.Add(-3 * time.Hour)
	id := storage.NewID(began)

	live := storage.DataKey(id)
	age(t, data, startUpload(t, srv, "backups/"+live), began, false)
	idle := storage.GlobalsKey(id)
	age(t, data, startUpload(t, srv, "backups/"+idle), began, true)
	other := storage.NewID(began)
	empty := storage.DataKey(other)
	up, err := srv.Client().CreateMultipartUpload(t.Context(), &awss3.CreateMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: aws.String("backups/" + empty)})
	if err != nil {
		t.Fatal(err)
	}
	age(t, data, aws.ToString(up.UploadId), began, false)

	listed, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range listed.Uploads {
		if d := aws.ToTime(u.Initiated).Sub(began); d < -time.Second || d > time.Second {
			t.Fatalf("upload of %s listed as initiated %s, not %s as aged: the test no longer stands for AWS", aws.ToString(u.Key), aws.ToTime(u.Initiated), began)
		}
	}

	tmps, err := st.Temporaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range tmps {
		if o.Key == live && now.Sub(o.Modified) > time.Minute {
			t.Errorf("Temporaries lists %s as last written %s; its part was written just now", o.Key, o.Modified)
		}
	}

	res, err := storage.Prune(t.Context(), storage.Catalog{Store: st}, storage.PruneOptions{Now: time.Now(), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	removed := map[string]bool{}
	for _, p := range res.Removed {
		removed[p.Key] = true
	}
	if removed[live] {
		t.Errorf("prune aborted the upload of %s, begun 3h ago with a part written just now: a capture still streaming", live)
	}
	if !removed[idle] || !removed[empty] || len(res.Removed) != 2 {
		t.Errorf("prune removed %+v; want the uploads of %s and %s, idle for 3h", res.Removed, idle, empty)
	}
	// What aborting them freed: the idle upload's one 5 MiB part.
	for _, p := range res.Removed {
		if want := map[string]int64{idle: 5 << 20}[p.Key]; p.Bytes != want {
			t.Errorf("prune says the upload of %s held %d bytes, want %d", p.Key, p.Bytes, want)
		}
	}
	if got := openUploads(t, srv); len(got) != 1 || got[0] != "backups/"+live {
		t.Errorf("uploads left: %q, want only the live one", got)
	}
}
