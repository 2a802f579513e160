package s3_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// TestGetResumeObjectDeleted: a key deleted between the break and the
// resume (a delete or prune beside a restore) fails the read saying the
// object was deleted, with storage.ErrNotFound for callers to branch on,
// not that it "changed".
func TestGetResumeObjectDeleted(t *testing.T) {
	srv := testenv.S3(t)
	p := &cutProxy{
		body: cutFirst,
		onCut: func(n int) {
			_, err := srv.Client().DeleteObject(t.Context(), &awss3.DeleteObjectInput{
				Bucket: aws.String(srv.Bucket), Key: aws.String("r/" + resumeKey),
			})
			if err != nil {
				t.Errorf("delete: %v", err)
			}
		},
	}
	st, _ := resumeSetup(t, srv, p, 13)
	got, err := readAll(t, st, resumeKey)
	t.Logf("read %d bytes, then: %v", len(got), err)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("read of an object deleted mid-read: %v; want storage.ErrNotFound", err)
	}
	if err == nil || !strings.Contains(err.Error(), "s3: get s3://"+srv.Bucket+"/r/"+resumeKey+": object deleted while being read, at byte ") {
		t.Errorf("read of an object deleted mid-read: %v; want it to say the object was deleted", err)
	}
	prefixOf(t, got, 13)
	if n := len(p.gets()); n != 2 {
		t.Errorf("%d GETs, want 2: a deleted object is not retried", n)
	}
}
