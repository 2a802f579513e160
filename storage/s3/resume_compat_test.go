package s3_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// ifMatchIgnorer serves a 100-byte object whose first answer breaks after
// 50 bytes, and answers the resume (Range, If-Match) with 206 from another
// object, as a server that ignores If-Match would after an overwrite.
type ifMatchIgnorer struct {
	etag2 string // ETag of the 206; "" sends none
	total int    // object size the 206's Content-Range claims
	gets  []string
}

func (f *ifMatchIgnorer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.gets = append(f.gets, r.Header.Get("Range")+" "+r.Header.Get("If-Match"))
	if r.Header.Get("Range") == "" {
		w.Header().Set("ETag", `"aaaa-2"`)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(strings.Repeat("a", 50)))
		w.(http.Flusher).Flush()
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close() // cut mid-body
		}
		return
	}
	if f.etag2 != "" {
		w.Header().Set("ETag", f.etag2)
	}
	w.Header().Set("Content-Range", fmt.Sprintf("bytes 50-%d/%d", f.total-1, f.total))
	w.Header().Set("Content-Length", fmt.Sprint(f.total-50))
	w.WriteHeader(http.StatusPartialContent)
	w.Write([]byte(strings.Repeat("b", f.total-50)))
}

// TestGetResumeIfMatchIgnored: a server that ignores If-Match must still
// not get two objects spliced into one read: the resumed answer's ETag or
// size gives the overwrite away.
func TestGetResumeIfMatchIgnored(t *testing.T) {
	for name, f := range map[string]*ifMatchIgnorer{
		"other etag": {etag2: `"bbbb-2"`, total: 100},
		"other size": {total: 120},
	} {
		t.Run(name, func(t *testing.T) {
			st := fakeStore(t, f)
			rc, err := st.Get(t.Context(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err == nil || !strings.Contains(err.Error(), "object changed while being read") {
				t.Fatalf("read %d bytes (%q...), err %v; want the change named", len(b), b[len(b)-min(len(b), 4):], err)
			}
			if strings.Contains(string(b), "b") {
				t.Errorf("bytes of the other object were handed over")
			}
			if len(f.gets) != 2 || f.gets[1] != `bytes=50- "aaaa-2"` {
				t.Errorf("requests (Range If-Match) = %q", f.gets)
			}
		})
	}
}
