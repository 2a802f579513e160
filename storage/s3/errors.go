package s3

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgbackups/pgbackups/storage"
)

// explain adds to err, when it is the answer S3 or an S3-compatible server
// gives a misconfigured client, what the operator can change: the SDK's
// message names the code but not the setting behind it ("PermanentRedirect:
// The bucket you are attempting to access must be addressed using the
// specified endpoint" names neither the region nor the variable). The
// hint names variables, never their values: no secret reaches a log. err
// stays wrapped, so callers still branch on its code (AccessDenied).
func (s *Store) explain(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	status, bucketRegion := 0, ""
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
		if re.Response != nil && re.Response.Response != nil {
			// AWS names the bucket's region on a wrong-region answer
			// (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonResponseHeaders.html).
			bucketRegion = re.Response.Header.Get("X-Amz-Bucket-Region")
		}
	}
	var hint string
	switch {
	case bucketRegion != "" && bucketRegion != s.region &&
		(status == http.StatusMovedPermanently || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException"):
		hint = fmt.Sprintf("bucket %s is in region %s, and requests were signed for %s: set AWS_REGION=%s", s.bucket, bucketRegion, s.region, bucketRegion)
	case code == "PermanentRedirect" || status == http.StatusMovedPermanently:
		hint = fmt.Sprintf("bucket %s is not served at this endpoint for region %s: set AWS_REGION to the bucket's region, or the endpoint (AWS_ENDPOINT_URL_S3) to the one the bucket lives on", s.bucket, s.region)
	case code == "AuthorizationHeaderMalformed":
		// Garage answers "unexpected scope" here for any region but its own.
		hint = fmt.Sprintf("requests were signed for region %s, which this server does not accept: set AWS_REGION to the server's region (Backblaze B2 and Wasabi: the one in the endpoint's host name; Garage: s3_region in garage.toml, \"garage\" by default; Cloudflare R2: auto)", s.region)
	case code == "SignatureDoesNotMatch":
		hint = fmt.Sprintf("the server computed another signature: check that the secret key (PGBACKUPS_S3_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY) is the one issued with the access key, and, for an S3-compatible server, the region (%s, set with AWS_REGION), the endpoint and PGBACKUPS_S3_PATH_STYLE, and that no proxy rewrites the request", s.region)
	// XAdminUserNotFound: VersityGW's answer (404) to an access key it
	// does not know.
	case code == "InvalidAccessKeyId" || code == "XAdminUserNotFound":
		hint = "the server does not know this access key: check PGBACKUPS_S3_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID, and that the endpoint (AWS_ENDPOINT_URL_S3) is the service that issued it"
	case code == "NoSuchBucket":
		hint = fmt.Sprintf("pgbackups does not create buckets: create bucket %s, or correct the bucket in PGBACKUPS_STORAGE_URL", s.bucket)
	case isFull(code, status):
		// Marked so that the capture removes what it stored of the
		// backup at once: it holds room the retry needs.
		return storage.NoSpace(&hinted{err: err, hint: fmt.Sprintf("the server refused the write as out of space or over a quota of bucket %s: free room on it (pgbackups prune, fewer backups kept) or raise the quota", s.bucket)})
	}
	// The SDK could not get credentials (none anywhere it looks, or the
	// source in use refused: STS for a web identity, an expired SSO
	// login): it fails before sending a request, with no error type to
	// branch on but its text.
	if hint == "" && strings.Contains(err.Error(), "failed to refresh cached credentials") {
		hint = "the AWS SDK could not get S3 credentials: set PGBACKUPS_S3_ACCESS_KEY_ID and PGBACKUPS_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or check the source in use (AWS_PROFILE, a web identity's role and token, the instance role)"
	}
	if hint == "" {
		return err
	}
	return &hinted{err: err, hint: hint}
}

// fullCodes are the error codes S3-compatible servers answer a write with
// when they are out of space or a quota is used up. S3 itself has no such
// answer. InsufficientStorage (507): VersityGW on ENOSPC (measured, v1.8.0;
// https://github.com/versity/versitygw/issues/2093), Dell ECS.
// XMinioStorageFull (507): MinIO past its minimum free drive threshold.
// XMinioAdminBucketQuotaExceeded (400): MinIO past a bucket quota.
// QuotaExceeded (403): Ceph RGW past a user or bucket quota, VersityGW on
// EDQUOT (https://github.com/versity/versitygw/pull/503).
// EntityTooLarge is not one: S3 answers it for an object over its size
// limit, which no space freed would let through.
var fullCodes = map[string]bool{
	"InsufficientStorage":            true,
	"XMinioStorageFull":              true,
	"XMinioAdminBucketQuotaExceeded": true,
	"QuotaExceeded":                  true,
}

// isFull reports whether an answer with code and HTTP status says the
// server is full: one of fullCodes, or any 507 Insufficient Storage.
func isFull(code string, status int) bool {
	return fullCodes[code] || status == http.StatusInsufficientStorage
}

// hinted is an error with what to do about it appended.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() + "; " + h.hint }
func (h *hinted) Unwrap() error { return h.err }

// isNotImplemented reports whether err is a server's refusal of an
// operation it does not implement (501 NotImplemented, as S3-compatible
// servers answer an S3 call they lack).
func isNotImplemented(err error) bool {
	return answered(err, "NotImplemented", http.StatusNotImplemented)
}

// answered reports whether err is the server's answer with error code
// code, or with HTTP status status whatever its code (a HEAD's answer has
// no body to name one).
func answered(err error, code string, status int) bool {
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == code {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == status
}

// isAccessDenied reports whether err is a refusal for want of permission.
func isAccessDenied(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "AccessDenied"
}
