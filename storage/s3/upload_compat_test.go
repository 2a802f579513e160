package s3_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pgbackups/pgbackups/storage/s3"
)

// multipartRecorder is just enough of a multipart-upload server to record
// what the client sends: each request's headers, and each part's size.
type multipartRecorder struct {
	mu    sync.Mutex
	reqs  []string // "METHOD query: offending headers"
	parts map[string]int64
}

func (m *multipartRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	var bad []string
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(lk, "x-amz-checksum-"), lk == "x-amz-sdk-checksum-algorithm", lk == "x-amz-trailer", lk == "content-md5":
			bad = append(bad, k+": "+strings.Join(v, ","))
		case lk == "content-encoding" && strings.Contains(strings.Join(v, ","), "aws-chunked"):
			bad = append(bad, k+": "+strings.Join(v, ","))
		case lk == "x-amz-content-sha256" && strings.HasPrefix(strings.Join(v, ","), "STREAMING-"):
			bad = append(bad, k+": "+strings.Join(v, ","))
		}
	}
	q := r.URL.Query()
	m.mu.Lock()
	m.reqs = append(m.reqs, fmt.Sprintf("%s %s: %v", r.Method, r.URL.RawQuery, bad))
	if q.Get("partNumber") != "" {
		m.parts[q.Get("partNumber")] = n
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/xml")
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut && q.Get("partNumber") != "":
		w.Header().Set("ETag", `"etag`+q.Get("partNumber")+`"`)
	case r.Method == http.MethodPost && q.Get("uploadId") != "":
		fmt.Fprint(w, `<CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><ETag>"x-3"</ETag></CompleteMultipartUploadResult>`)
	case r.Method == http.MethodPut:
		w.Header().Set("ETag", `"single"`)
	default:
		http.Error(w, "unexpected", http.StatusBadRequest)
	}
}

// jaggedReader hands out its stream in reads of odd sizes, as a pipe
// from pg_dump through zstd does.
type jaggedReader struct{ left int64 }

func (j *jaggedReader) Read(p []byte) (int, error) {
	if j.left == 0 {
		return 0, io.EOF
	}
	n := int64(min(len(p), 7919))
	n = min(n, j.left)
	j.left -= n
	return int(n), nil
}

// TestUploadWireCompat pins what uploads send, for the S3-compatible
// servers that differ from AWS: every part but the last the same size
// (Cloudflare R2 refuses a multipart upload otherwise:
// https://github.com/cloudflare/cloudflare-docs/pull/7485), and no
// checksum headers, trailers or aws-chunked bodies, which older MinIO,
// Ceph RGW, B2 and GCS reject since the SDK began sending CRC32 by default.
func TestUploadWireCompat(t *testing.T) {
	rec := &multipartRecorder{parts: map[string]int64{}}
	st := fakeStore(t, rec, func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	size := int64(2*s3.MinPartSize + 12345)
	n, err := st.Put(t.Context(), "k", &jaggedReader{left: size})
	if err != nil || n != size {
		t.Fatalf("Put = %d, %v", n, err)
	}
	if _, err := st.Put(t.Context(), "small", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := map[string]int64{"1": s3.MinPartSize, "2": s3.MinPartSize, "3": 12345}
	if fmt.Sprint(rec.parts) != fmt.Sprint(want) {
		t.Errorf("part sizes = %v, want %v", rec.parts, want)
	}
	for _, r := range rec.reqs {
		if !strings.HasSuffix(r, ": []") {
			t.Errorf("request with checksum or streaming headers: %s", r)
		}
	}
}
