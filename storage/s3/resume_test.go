package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// cutProxy forwards TCP from 127.0.0.1 to an S3 server and breaks the
// first response on chosen connections, as a reset or a proxy's idle
// timeout would. Connections are numbered from 0 in the order accepted;
// the store under test sends nothing but GETs through it, one response
// per connection until one is cut.
type cutProxy struct {
	// body returns how many bytes of the first response's body connection
	// n passes before it is cut; -1 passes everything. Nil: -1.
	body func(n int) int64
	// head, when set, rewrites the first response head of connection n.
	head func(n int, head string) string
	// onCut, when set, runs once connection n is cut on the server's
	// side and before the client sees it.
	onCut func(n int)
	// reset cuts with a TCP reset (SO_LINGER 0) instead of a FIN.
	reset bool

	addr string
	mu   sync.Mutex
	sent bytes.Buffer // every byte the client sent
	n    int          // connections accepted
}

// start listens on 127.0.0.1:0 and forwards to upstream (host:port) until
// the test ends; then it closes every connection and waits for its
// goroutines.
func (p *cutProxy) start(t *testing.T, upstream string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			p.mu.Lock()
			n := p.n
			p.n++
			p.mu.Unlock()
			wg.Go(func() { p.requests(u, c) })
			wg.Go(func() { p.respond(n, c, u) })
		}
	})
}

// requests copies the client's bytes to the server, keeping a copy.
func (p *cutProxy) requests(u, c net.Conn) {
	defer u.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.sent.Write(buf[:n])
			p.mu.Unlock()
			if _, err := u.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// respond copies the server's bytes to the client, rewriting the first
// response head and cutting its body as configured for connection n.
func (p *cutProxy) respond(n int, c, u net.Conn) {
	defer c.Close()
	defer u.Close()
	limit := int64(-1)
	if p.body != nil {
		limit = p.body(n)
	}
	var pending []byte // the first head, until it is whole
	headDone := false
	buf := make([]byte, 32<<10)
	for {
		m, err := u.Read(buf)
		out := buf[:m]
		if !headDone {
			pending = append(pending, out...)
			i := bytes.Index(pending, []byte("\r\n\r\n"))
			if i < 0 {
				if err != nil {
					return
				}
				continue
			}
			head := string(pending[:i+4])
			if p.head != nil {
				head = p.head(n, head)
			}
			if _, err := c.Write([]byte(head)); err != nil {
				return
			}
			out, headDone = pending[i+4:], true
		}
		if limit >= 0 && int64(len(out)) >= limit {
			c.Write(out[:limit])
			if p.onCut != nil {
				p.onCut(n)
			}
			if tc, ok := c.(*net.TCPConn); ok && p.reset {
				tc.SetLinger(0)
			}
			return
		}
		if limit >= 0 {
			limit -= int64(len(out))
		}
		if _, err := c.Write(out); err != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

// gets returns the head of every GET the client sent, in order.
func (p *cutProxy) gets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var heads []string
	for _, h := range strings.Split(p.sent.String(), "\r\n\r\n") {
		if strings.HasPrefix(h, "GET ") {
			heads = append(heads, h)
		}
	}
	return heads
}

// header returns the value of header name in an HTTP head, "" if absent.
func header(head, name string) string {
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// withoutHeader returns head with header name removed.
func withoutHeader(head, name string) string {
	lines := strings.Split(head, "\r\n")
	kept := lines[:0]
	for _, line := range lines {
		if k, _, ok := strings.Cut(line, ":"); !ok || !strings.EqualFold(k, name) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\r\n")
}

const (
	resumeKey  = "20261125-020000-k3f9/20261125-020000-k3f9.dump.zst"
	resumeSize = 4 << 20
	cutAt      = 1 << 20
)

// cutFirst is a cutProxy.body that cuts the first connection's response
// at cutAt and passes every later one whole.
func cutFirst(n int) int64 {
	if n == 0 {
		return cutAt
	}
	return -1
}

// resumeSetup stores a resumeSize object of stream(seed) on srv directly,
// and returns a store that reads it through p, started here, plus the
// object's ETag.
func resumeSetup(t *testing.T, srv testenv.S3Server, p *cutProxy, seed uint64) (st *s3.Store, etag string) {
	t.Helper()
	if _, err := newStore(t, srv, "r").Put(t.Context(), resumeKey, stream(seed, resumeSize)); err != nil {
		t.Fatal(err)
	}
	head, err := srv.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{
		Bucket: aws.String(srv.Bucket), Key: aws.String("r/" + resumeKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.start(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	proxied := srv
	proxied.Endpoint = "http://" + p.addr
	return newStore(t, proxied, "r"), aws.ToString(head.ETag)
}

// readAll reads key from st to its end and returns what it got and how
// the read ended.
func readAll(t *testing.T, st *s3.Store, key string) ([]byte, error) {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func prefixOf(t *testing.T, got []byte, seed uint64) {
	t.Helper()
	want, _ := io.ReadAll(stream(seed, int64(len(got))))
	if !bytes.Equal(got, want) {
		t.Fatalf("the %d bytes read are not the start of the object", len(got))
	}
}

// TestGetResumesAfterReset: a connection reset in the middle of a download
// costs a second request for the rest of the same object, not the
// download.
func TestGetResumesAfterReset(t *testing.T) {
	p := &cutProxy{reset: true, body: cutFirst}
	st, etag := resumeSetup(t, testenv.S3(t), p, 11)
	rc, err := st.Get(t.Context(), resumeKey)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if digest(t, rc) != digest(t, stream(11, resumeSize)) {
		t.Fatal("content differs after a resumed read")
	}
	gets := p.gets()
	if len(gets) != 2 {
		t.Fatalf("%d GETs, want 2 (the first, cut; one resume):\n%s", len(gets), strings.Join(gets, "\n\n"))
	}
	if r := header(gets[0], "Range"); r != "" {
		t.Errorf("first GET asks for Range %q", r)
	}
	t.Logf("resume: Range %s, If-Match %s", header(gets[1], "Range"), header(gets[1], "If-Match"))
	var from int64
	if _, err := fmt.Sscanf(header(gets[1], "Range"), "bytes=%d-", &from); err != nil || from < 0 || from > cutAt {
		t.Errorf("resume asks for Range %q, want bytes=N- with N <= %d", header(gets[1], "Range"), cutAt)
	}
	if got := header(gets[1], "If-Match"); got != etag {
		t.Errorf("resume sends If-Match %q, want the object's ETag %q", got, etag)
	}
}

// TestGetResumeObjectChanged: a key overwritten between the break and the
// resume fails the read, saying so, rather than splicing the new object's
// bytes onto the old one's.
func TestGetResumeObjectChanged(t *testing.T) {
	srv := testenv.S3(t)
	next, _ := io.ReadAll(stream(12, resumeSize)) // same size, other bytes: only the ETag tells them apart
	p := &cutProxy{
		body: cutFirst,
		onCut: func(n int) {
			_, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{
				Bucket: aws.String(srv.Bucket), Key: aws.String("r/" + resumeKey), Body: bytes.NewReader(next),
			})
			if err != nil {
				t.Errorf("overwrite: %v", err)
			}
		},
	}
	st, _ := resumeSetup(t, srv, p, 11)
	got, err := readAll(t, st, resumeKey)
	t.Logf("read %d bytes, then: %v", len(got), err)
	if err == nil || !strings.Contains(err.Error(), "s3: get s3://"+srv.Bucket+"/r/"+resumeKey+": object changed while being read, at byte ") {
		t.Fatalf("read of an object overwritten mid-read: %v; want it to say the object changed", err)
	}
	if !strings.Contains(err.Error(), "412") {
		t.Errorf("error %q does not carry the server's 412", err)
	}
	prefixOf(t, got, 11)
	if n := len(p.gets()); n != 2 {
		t.Errorf("%d GETs, want 2: a changed object is not retried", n)
	}
}

// TestGetResumeGivesUp: a read that breaks again on every resume, before
// any byte, ends after a few attempts with an error that names the object,
// how far the read got and why.
func TestGetResumeGivesUp(t *testing.T) {
	p := &cutProxy{body: func(n int) int64 {
		if n == 0 {
			return cutAt
		}
		return 0 // the response head, then nothing
	}}
	srv := testenv.S3(t)
	st, _ := resumeSetup(t, srv, p, 11)
	got, err := readAll(t, st, resumeKey)
	t.Logf("read %d bytes, then: %v", len(got), err)
	want := fmt.Sprintf("s3: get s3://%s/r/%s: gave up at byte %d of %d after 3 attempts to resume: ", srv.Bucket, resumeKey, len(got), resumeSize)
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read that breaks on every resume: %v; want %q and the cause (unexpected EOF)", err, want)
	}
	prefixOf(t, got, 11)
	if n := len(p.gets()); n != 4 {
		t.Errorf("%d GETs, want 4 (the first and 3 resumes)", n)
	}
}

// TestGetResumeRangeIgnored: a resume answered with 200 and the whole
// object (a server or middlebox that drops Range) fails, naming that,
// rather than splicing the object's start onto what was read.
func TestGetResumeRangeIgnored(t *testing.T) {
	p := &cutProxy{
		body: cutFirst,
		head: func(n int, head string) string {
			if n == 0 {
				return head
			}
			head = strings.Replace(head, "HTTP/1.1 206 Partial Content", "HTTP/1.1 200 OK", 1)
			return withoutHeader(head, "Content-Range")
		},
	}
	st, _ := resumeSetup(t, testenv.S3(t), p, 11)
	got, err := readAll(t, st, resumeKey)
	t.Logf("read %d bytes, then: %v", len(got), err)
	if err == nil || !strings.Contains(err.Error(), "the server ignored Range") {
		t.Fatalf("resume answered with the whole object: %v; want it named", err)
	}
	prefixOf(t, got, 11)
}

// TestGetNoResume: without an ETag to pin the object by, or once the
// caller has given up, a broken read fails as it always did: one GET, and
// the error reads as a path.
func TestGetNoResume(t *testing.T) {
	t.Run("no ETag", func(t *testing.T) {
		p := &cutProxy{
			body: func(n int) int64 { return cutAt },
			head: func(n int, head string) string { return withoutHeader(head, "ETag") },
		}
		srv := testenv.S3(t)
		st, _ := resumeSetup(t, srv, p, 11)
		got, err := readAll(t, st, resumeKey)
		t.Logf("read %d bytes, then: %v", len(got), err)
		if err == nil || !strings.HasPrefix(err.Error(), "s3: get s3://"+srv.Bucket+"/r/"+resumeKey+": ") || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut read of an object without ETag: %v; want the path and unexpected EOF", err)
		}
		prefixOf(t, got, 11)
		if n := len(p.gets()); n != 1 {
			t.Errorf("%d GETs, want 1", n)
		}
	})
	t.Run("caller cancelled", func(t *testing.T) {
		p := &cutProxy{}
		srv := testenv.S3(t)
		st, _ := resumeSetup(t, srv, p, 11)
		ctx, cancel := context.WithCancel(t.Context())
		rc, err := st.Get(ctx, resumeKey)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, make([]byte, 1<<10)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, err = io.Copy(io.Discard, rc)
		t.Logf("read after cancel: %v", err)
		if err == nil || !strings.HasPrefix(err.Error(), "s3: get s3://"+srv.Bucket+"/r/"+resumeKey+": ") || !errors.Is(err, context.Canceled) {
			t.Fatalf("read after the caller cancelled: %v; want the path and context.Canceled", err)
		}
		if n := len(p.gets()); n != 1 {
			t.Errorf("%d GETs, want 1", n)
		}
	})
}
