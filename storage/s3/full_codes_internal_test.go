package s3

import (
	"errors"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgbackups/pgbackups/storage"
)

// TestExplainFull: the answers S3-compatible servers give when full or
// over a quota are storage.ErrNoSpace, still carrying the server's code;
// a size over S3's object limit (EntityTooLarge) and a plain refusal are
// not.
func TestExplainFull(t *testing.T) {
	s := &Store{bucket: "b", region: "us-east-1"}
	for _, c := range []struct {
		code   string
		status int
		full   bool
	}{
		{"InsufficientStorage", 507, true},            // VersityGW, Dell ECS
		{"XMinioStorageFull", 507, true},              // MinIO
		{"XMinioAdminBucketQuotaExceeded", 400, true}, // MinIO bucket quota
		{"QuotaExceeded", 403, true},                  // Ceph RGW, VersityGW on EDQUOT
		{"", 507, true},                               // any 507
		{"EntityTooLarge", 400, false},
		{"AccessDenied", 403, false},
		{"InternalError", 500, false},
	} {
		api := &smithy.GenericAPIError{Code: c.code, Message: "m"}
		err := &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: c.status, Header: http.Header{}}},
			Err:      api,
		}
		got := s.explain(err)
		if errors.Is(got, storage.ErrNoSpace) != c.full {
			t.Errorf("explain(%s %d) = %v; Is ErrNoSpace %v, want %v", c.code, c.status, got, !c.full, c.full)
		}
		var back smithy.APIError
		if !errors.As(got, &back) || back.ErrorCode() != c.code {
			t.Errorf("explain(%s %d) = %v lost the server's code", c.code, c.status, got)
		}
	}
}
