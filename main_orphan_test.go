package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// TestOrphansRemovedOnceOld: objects without a manifest that nothing has
// written to for PGBACKUPS_ORPHAN_GRACE are a dead capture's: prune removes
// them, and delete removes them without the backup lock; younger ones are
// left. On S3, whose server stamps the times (a local directory judges by
// ctime, which a test cannot set back), aged on VersityGW's files.
func TestOrphansRemovedOnceOld(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
	data := t.TempDir()
	srv := testenv.S3At(t, data)
	env := append(srv.Env(), "PGBACKUPS_ORPHAN_GRACE=1h", "PGBACKUPS_GLOBALS=false")
	withDB := append(slices.Clone(env), "PGBACKUPS_DATABASE_URL="+pg.URL(db))
	r := run(t, withDB, "capture")
	if r.code != 0 {
		t.Fatalf("capture: exit %d\n%s", r.code, r.stderr)
	}
	kept := lastLine(r.stdout)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// put writes a data object with no manifest, last written ago.
	put := func(ago time.Duration) string {
		t.Helper()
		at := time.Now().Add(-ago)
		id := storage.NewID(at)
		key := storage.DataKey(id)
		if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(srv.Prefix + "/" + key),
			Body: strings.NewReader("half a dump")}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(data, srv.Bucket, srv.Prefix, filepath.FromSlash(key)), at, at); err != nil {
			t.Fatalf("age %s on VersityGW's files: %v", key, err)
		}
		return id
	}
	dead, young, leftover := put(3*time.Hour), put(30*time.Minute), put(48*time.Hour)

	if r := run(t, env, "delete", leftover, "--confirm", leftover); r.code != 0 {
		t.Errorf("delete of a dead capture's leftovers, without the lock: exit %d\n%s", r.code, r.stderr)
	}
	if r := run(t, withDB, "prune"); r.code != 0 || !strings.Contains(r.stdout, dead) {
		t.Errorf("prune: exit %d, want %s removed\n%s%s", r.code, dead, r.stdout, r.stderr)
	}
	out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String(srv.Prefix + "/")})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, o := range out.Contents {
		id, _ := storage.BackupOf(strings.TrimPrefix(aws.ToString(o.Key), srv.Prefix+"/"))
		if len(left) == 0 || left[len(left)-1] != id {
			left = append(left, id)
		}
	}
	want := []string{kept, young}
	slices.Sort(want)
	slices.Sort(left)
	if !slices.Equal(slices.Compact(left), want) {
		t.Errorf("left %v, want %v: the backup and the orphan written to 30 minutes ago", left, want)
	}
}
