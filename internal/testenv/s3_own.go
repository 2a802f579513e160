package testenv

import (
	"errors"
	"testing"
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
		noVersityGW(t, err)
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
	return newBucket(t, srv, 0)
}
