package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3At starts a VersityGW server of the test's own that keeps its objects
// in data, a directory the test chose (a tiny tmpfs, to fill it; one whose
// files it ages, as time would), and returns a fresh bucket on it. The
// server is stopped when the test ends; data is the test's to remove.
//
// Without the versitygw binary the test is skipped, or fails when CI=true,
// as with S3.
func S3At(t testing.TB, data string) S3Server {
	t.Helper()
	bin, err := findVersityGW()
	if err != nil {
		msg := fmt.Sprintf("testenv: %v; install it with\n"+
			"\tGOBIN=$HOME/.cache/pgbackups/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0\n"+
			"or put it on PATH, or set %s to its path", err, VersityGWEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir() // versitygw.log
	var srv *versitygw
	var errs []error
	for range 3 { // see startVersityGW
		if srv, err = launch(bin, dir, data); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if srv == nil {
		t.Fatalf("testenv: start versitygw on %s: %v", data, errors.Join(errs...))
	}
	t.Cleanup(srv.kill)

	s := S3Server{
		Endpoint:  srv.endpoint,
		Bucket:    bucketName(t.Name(), 0),
		Prefix:    "backups",
		AccessKey: srv.accessKey,
		SecretKey: srv.secretKey,
		Region:    "us-east-1",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v%s", s.Bucket, err, srv.logTail())
	}
	return s
}
