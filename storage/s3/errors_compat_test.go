package s3_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/pgbackups/pgbackups/storage/s3"
)

// refuser answers every request as a misconfigured client's requests are
// answered: status, headers, and an S3 error document (none to a HEAD).
type refuser struct {
	status int
	header map[string]string
	code   string
	msg    string
}

func (f refuser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range f.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(f.status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><StringToSign>AWS4-HMAC-SHA256</StringToSign></Error>`, f.code, f.msg)
	}
}

// TestErrorsSayWhatToChange: the answers S3 and S3-compatible servers give
// a wrong region, endpoint, key or bucket come back with the setting to
// change, whatever the operation, with the server's code still there for
// callers that branch on it, and no secret.
func TestErrorsSayWhatToChange(t *testing.T) {
	for name, c := range map[string]struct {
		srv  refuser
		want string
		head bool // HEAD (Delete's first request) gets the hint too
	}{
		// AWS, a bucket in another region: 301 with the bucket's region
		// in a header, also on HEAD, which has no body.
		"aws wrong region": {
			srv: refuser{status: 301, header: map[string]string{"x-amz-bucket-region": "eu-west-1"}, code: "PermanentRedirect",
				msg: "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint."},
			want: "bucket bkt is in region eu-west-1, and requests were signed for us-east-1: set AWS_REGION=eu-west-1",
			head: true,
		},
		"redirect without region": {
			srv:  refuser{status: 301, code: "PermanentRedirect", msg: "The bucket you are attempting to access must be addressed using the specified endpoint."},
			want: "set AWS_REGION to the bucket's region, or the endpoint (AWS_ENDPOINT_URL_S3)",
			head: true,
		},
		// Garage signs for its own region ("garage") and refuses others;
		// B2 and Wasabi want the region of their endpoint.
		"garage region": {
			srv:  refuser{status: 400, code: "AuthorizationHeaderMalformed", msg: "Authorization header malformed, unexpected scope: 20261207/us-east-1/s3/aws4_request"},
			want: "requests were signed for region us-east-1, which this server does not accept: set AWS_REGION",
		},
		"signature": {
			srv:  refuser{status: 403, code: "SignatureDoesNotMatch", msg: "The request signature we calculated does not match the signature you provided. Check your key and signing method."},
			want: "check that the secret key (PGBACKUPS_S3_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY)",
		},
		"access key": {
			srv:  refuser{status: 403, code: "InvalidAccessKeyId", msg: "The AWS Access Key Id you provided does not exist in our records."},
			want: "check PGBACKUPS_S3_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID",
		},
		"access key, versitygw": {
			srv:  refuser{status: 404, code: "XAdminUserNotFound", msg: "No user exists with the provided access key ID."},
			want: "check PGBACKUPS_S3_ACCESS_KEY_ID or AWS_ACCESS_KEY_ID",
		},
		"no bucket": {
			srv:  refuser{status: 404, code: "NoSuchBucket", msg: "The specified bucket does not exist"},
			want: "pgbackups does not create buckets: create bucket bkt",
		},
	} {
		t.Run(name, func(t *testing.T) {
			st := fakeStore(t, c.srv)
			ctx := t.Context()
			check := func(op string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: nil error", op)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: %v\nwant it to say %q", op, err, c.want)
				}
				if strings.Contains(err.Error(), "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY") {
					t.Errorf("%s: error holds the secret key: %v", op, err)
				}
				var api smithy.APIError
				if !errors.As(err, &api) {
					t.Errorf("%s: %v: the server's error is no longer wrapped", op, err)
				}
			}
			_, err := st.List(ctx, "")
			check("List", err)
			_, err = st.Get(ctx, "k")
			check("Get", err)
			_, err = st.Put(ctx, "k", strings.NewReader("x"))
			check("Put", err)
			_, err = st.Temporaries(ctx)
			check("Temporaries", err)
			if c.head {
				check("Delete", st.Delete(ctx, "k"))
			}
		})
	}
}

// TestTemporariesNotImplemented: a server without ListMultipartUploads
// (s3proxy before 1.5, lakeFS, several gateways answer 501) makes
// Temporaries fail with errors.ErrUnsupported and what the operator must
// do instead, so prune can tell it from a failure.
func TestTemporariesNotImplemented(t *testing.T) {
	st := fakeStore(t, refuser{status: 501, code: "NotImplemented", msg: "A header you provided implies functionality that is not implemented"})
	_, err := st.Temporaries(t.Context())
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Temporaries = %v, want errors.ErrUnsupported", err)
	}
	if want := "AbortIncompleteMultipartUpload lifecycle rule"; !strings.Contains(err.Error(), want) {
		t.Errorf("Temporaries = %v, want it to say %q", err, want)
	}
}

// TestNoCredentialsSaysWhatToSet: with no credentials anywhere the SDK
// looks (the instance role left out, as it is off this machine), the
// error names the variables to set, not just the SDK's last resort.
func TestNoCredentialsSaysWhatToSet(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // no request to 169.254.169.254
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	st := fakeStore(t, refuser{status: 500, code: "InternalError", msg: "not reached"}, func(o *s3.Options) { o.AccessKeyID, o.SecretAccessKey = "", "" })
	_, err := st.List(t.Context(), "")
	if err == nil || !strings.Contains(err.Error(), "the AWS SDK could not get S3 credentials: set PGBACKUPS_S3_ACCESS_KEY_ID") {
		t.Errorf("List without credentials: %v", err)
	}
}
