package s3_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// partsRefused answers ListMultipartUploads with one old upload per key,
// and ListParts with NotImplemented (501) for one key and AccessDenied for
// the other.
type partsRefused struct{ keys []string }

func (p partsRefused) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/xml")
	switch {
	case q.Has("uploads"):
		var b strings.Builder
		b.WriteString(`<ListMultipartUploadsResult><Bucket>bkt</Bucket><IsTruncated>false</IsTruncated>`)
		for i, k := range p.keys {
			fmt.Fprintf(&b, `<Upload><Key>%s</Key><UploadId>u%d</UploadId><Initiated>%s</Initiated></Upload>`, k, i, time.Now().Add(-3*time.Hour).UTC().Format(time.RFC3339))
		}
		b.WriteString(`</ListMultipartUploadsResult>`)
		fmt.Fprint(w, b.String())
	case q.Get("uploadId") == "u0":
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprint(w, `<Error><Code>NotImplemented</Code><Message>not here</Message></Error>`)
	default:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>no</Message></Error>`)
	}
}

// TestTemporariesMixedErrors: one upload's parts the server cannot list
// (not implemented) and another's it refuses (access denied): the refusal
// must stay an error, not become a note with the other.
func TestTemporariesMixedErrors(t *testing.T) {
	keys := []string{"backups/20260101-020000-abcd/20260101-020000-abcd.dump.zst", "backups/20260102-020000-efgh/20260102-020000-efgh.dump.zst"}
	st := fakeStore(t, partsRefused{keys: keys})
	_, err := st.Temporaries(t.Context())
	if err == nil || errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("Temporaries = %v, want the access refusal as an error, not an unsupported note", err)
	}
}
