package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/s3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// newStore opens a Store on srv with static credentials and 5 MiB parts.
func newStore(t *testing.T, srv testenv.S3Server, prefix string) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), s3.Options{
		Bucket:          srv.Bucket,
		Prefix:          prefix,
		Region:          srv.Region,
		Endpoint:        srv.Endpoint,
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
		PartSize:        s3.MinPartSize,
		Concurrency:     2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// stream yields n pseudo-random bytes from seed. It hides every method but
// Read, so the uploader sees an unseekable stream like a pg_dump pipe.
func stream(seed uint64, n int64) io.Reader {
	return struct{ io.Reader }{io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)}
}

func digest(t *testing.T, r io.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func get(t *testing.T, st *s3.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// etagParts returns the part count a multipart ETag ("<md5>-N") carries,
// or "" for a single-part object.
func etagParts(t *testing.T, srv testenv.S3Server, key string) string {
	t.Helper()
	out, err := srv.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{
		Bucket: aws.String(srv.Bucket), Key: aws.String(key),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := strings.Cut(strings.Trim(aws.ToString(out.ETag), `"`), "-")
	return n
}

// assertNothingLeft checks that key does not exist and that no multipart
// upload is in progress anywhere in the bucket.
func assertNothingLeft(t *testing.T, srv testenv.S3Server, st *s3.Store, key string) {
	t.Helper()
	if _, err := st.Get(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get after failed Put: %v, want ErrNotFound", err)
	}
	objs, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("objects left: %+v", objs)
	}
	ups, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{
		Bucket: aws.String(srv.Bucket),
	})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for _, u := range ups.Uploads {
		t.Errorf("multipart upload left: key %s id %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
}

func TestPutGetMultipart(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	const size = 12 << 20

	n, err := st.Put(t.Context(), "db/base.dump", stream(1, size))
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Fatalf("Put stored %d bytes, want %d", n, size)
	}
	if got := etagParts(t, srv, "backups/db/base.dump"); got != "3" {
		t.Errorf("ETag part count %q, want 3 (5+5+2 MiB)", got)
	}

	rc, err := st.Get(t.Context(), "db/base.dump")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if digest(t, rc) != digest(t, stream(1, size)) {
		t.Fatal("content differs after round trip")
	}

	objs, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Key != "db/base.dump" || objs[0].Size != size || objs[0].Modified.IsZero() {
		t.Fatalf("List = %+v", objs)
	}
}

func TestPutSmall(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "")
	for _, tc := range []struct {
		key  string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("manifest")},
		{"exactly-one-part", bytes.Repeat([]byte{7}, s3.MinPartSize)},
	} {
		n, err := st.Put(t.Context(), tc.key, struct{ io.Reader }{bytes.NewReader(tc.data)})
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if n != int64(len(tc.data)) {
			t.Fatalf("%s: stored %d, want %d", tc.key, n, len(tc.data))
		}
		if got := get(t, st, tc.key); !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: got %d bytes back, want %d", tc.key, len(got), len(tc.data))
		}
	}
}

func TestPutSizedRaisesPartSize(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "p")
	// A 100 GiB hint needs 13 MiB parts (125 GiB / 10,000, rounded up).
	const size = 20 << 20
	n, err := st.PutSized(t.Context(), "big", stream(2, size), 100<<30)
	if err != nil || n != size {
		t.Fatalf("PutSized = %d, %v", n, err)
	}
	if got := etagParts(t, srv, "p/big"); got != "2" {
		t.Errorf("ETag part count %q, want 2 (13+7 MiB)", got)
	}
}

var errBoom = errors.New("pg_dump exited 1")

// failingReader yields n bytes of stream and then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestPutReaderFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after int64
	}{
		{"in first part", 1 << 20},     // before any request
		{"in third part", 11 << 20},    // multipart upload created, parts sent
		{"on part boundary", 10 << 20}, // the error arrives with no data
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.S3(t)
			st := newStore(t, srv, "backups")
			_, err := st.Put(t.Context(), "db/base.dump", &failingReader{stream(3, tc.after), errBoom})
			if !errors.Is(err, errBoom) {
				t.Fatalf("Put = %v, want %v", err, errBoom)
			}
			if !strings.HasPrefix(err.Error(), "s3: put s3://"+srv.Bucket+"/backups/db/base.dump: ") {
				t.Errorf("error does not read as a path: %v", err)
			}
			assertNothingLeft(t, srv, st, "db/base.dump")
		})
	}
}

// cancellingReader cancels its context once it has yielded after bytes and
// keeps yielding, as pg_dump would while SIGTERM reaches the daemon.
type cancellingReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

// TestPutCancelled covers what the SDK uploader alone gets wrong: it aborts
// the multipart upload with the cancelled context, so the abort never
// leaves the process. Put aborts again on a detached context.
func TestPutCancelled(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	r := &cancellingReader{r: stream(4, 64<<20), after: 11 << 20, cancel: cancel}
	_, err := st.Put(ctx, "db/base.dump", r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if r.n >= 64<<20 {
		t.Errorf("Put read the whole stream after cancel")
	}
	assertNothingLeft(t, srv, st, "db/base.dump")
}

func TestNotFound(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	if _, err := st.Get(t.Context(), "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get missing = %v, want ErrNotFound", err)
	}
	err := st.Delete(t.Context(), "missing")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Delete missing = %v, want ErrNotFound", err)
	}
	if want := "s3: delete s3://" + srv.Bucket + "/backups/missing: not found"; err == nil || err.Error() != want {
		t.Errorf("Delete missing = %q, want %q", err, want)
	}
}

func TestDelete(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	if _, err := st.Put(t.Context(), "a", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(t.Context(), "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if err := st.Delete(t.Context(), "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete = %v", err)
	}
}

func TestGetMissingBucketIsNotNotFound(t *testing.T) {
	srv := testenv.S3(t)
	srv.Bucket = "no-such-bucket-pgbackups"
	st := newStore(t, srv, "")
	_, err := st.Get(t.Context(), "k")
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get on missing bucket = %v, want an error other than ErrNotFound", err)
	}
}

func TestListPrefixIsolation(t *testing.T) {
	srv := testenv.S3(t)
	// "db" is a string prefix of "db2": List must not leak across.
	a := newStore(t, srv, "db")
	b := newStore(t, srv, "/db2/")
	root := newStore(t, srv, "")
	put := func(st *s3.Store, key string) {
		t.Helper()
		if _, err := st.Put(t.Context(), key, strings.NewReader(key)); err != nil {
			t.Fatal(err)
		}
	}
	put(a, "2024/b.dump")
	put(a, "2024/a.dump")
	put(a, "manifest.json")
	put(b, "2024/c.dump")

	keys := func(st *s3.Store, prefix string) []string {
		t.Helper()
		objs, err := st.List(t.Context(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, o := range objs {
			ks = append(ks, o.Key)
		}
		return ks
	}
	for _, tc := range []struct {
		name   string
		st     *s3.Store
		prefix string
		want   []string
	}{
		{"a all", a, "", []string{"2024/a.dump", "2024/b.dump", "manifest.json"}},
		{"a sub", a, "2024/", []string{"2024/a.dump", "2024/b.dump"}},
		{"a partial name", a, "man", []string{"manifest.json"}},
		{"b all", b, "", []string{"2024/c.dump"}},
		{"b none", b, "manifest", nil},
		{"root", root, "", []string{"db/2024/a.dump", "db/2024/b.dump", "db/manifest.json", "db2/2024/c.dump"}},
	} {
		if got := keys(tc.st, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("%s: List(%q) = %q, want %q", tc.name, tc.prefix, got, tc.want)
		}
	}
	if got := string(get(t, b, "2024/c.dump")); got != "2024/c.dump" {
		t.Errorf("b Get = %q", got)
	}
	if _, err := b.Get(t.Context(), "manifest.json"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("b sees a's key: %v", err)
	}
}

func TestPresignGet(t *testing.T) {
	srv := testenv.S3(t)
	st := newStore(t, srv, "backups")
	if _, err := st.Put(t.Context(), "db/x.dump", strings.NewReader("dump bytes")); err != nil {
		t.Fatal(err)
	}
	url, err := st.PresignGet(t.Context(), "db/x.dump", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(url, srv.SecretKey) {
		t.Fatal("presigned URL holds the secret key")
	}
	fetch := func(url string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := fetch(url); code != http.StatusOK || body != "dump bytes" {
		t.Fatalf("GET presigned = %d %q", code, body)
	}
	// The signature covers the key: another key with the same query fails.
	if code, _ := fetch(strings.Replace(url, "x.dump", "y.dump", 1)); code == http.StatusOK {
		t.Fatal("presigned URL works for another key")
	}
}

func TestLocation(t *testing.T) {
	srv := testenv.S3Server{Bucket: "bkt", Region: "us-east-1", Endpoint: "http://127.0.0.1:1"}
	for prefix, want := range map[string]string{
		"":        "s3://bkt/db/x.dump",
		"backups": "s3://bkt/backups/db/x.dump",
		"/a/b/":   "s3://bkt/a/b/db/x.dump",
	} {
		if got := newStore(t, srv, prefix).Location("db/x.dump"); got != want {
			t.Errorf("prefix %q: Location = %s, want %s", prefix, got, want)
		}
	}
}

// TestNewFromEnvironment checks that the SDK's own variables reach the
// store: a binary configured only by AWS_ENDPOINT_URL_S3 and friends must
// talk path-style to that endpoint.
func TestNewFromEnvironment(t *testing.T) {
	srv := testenv.S3(t)
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	bucket, prefix, err := s3.ParseURL(os.Getenv("PGBACKUPS_STORAGE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3.New(t.Context(), s3.Options{Bucket: bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(t.Context(), "k", strings.NewReader("v")); err != nil {
		t.Fatal(err)
	}
	if got := string(get(t, st, "k")); got != "v" {
		t.Fatalf("Get = %q", got)
	}
}

func TestNewRejects(t *testing.T) {
	for name, opts := range map[string]s3.Options{
		"no bucket":      {Region: "us-east-1"},
		"bad bucket":     {Bucket: "Bad_Bucket", Region: "us-east-1"},
		"tiny part size": {Bucket: "bkt", Region: "us-east-1", PartSize: 1 << 20},
	} {
		if _, err := s3.New(t.Context(), opts); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}

// TestPutBoundedMemory uploads 64 MiB and checks the heap allocated on the
// way stays within what PartSize x Concurrency explains: the SDK uploader
// allocates Concurrency+1 pooled parts plus the first part, which it reads
// with io.ReadAll (grown by append: about 2 x PartSize), so about
// (Concurrency+3) x PartSize; two PartSizes more cover per-request garbage
// and changes in the SDK.
// Buffering the stream would allocate at least 64 MiB. TotalAlloc counts
// bytes allocated, not timing, so the check does not flake under load.
func TestPutBoundedMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	srv := testenv.S3(t)
	st := newStore(t, srv, "")
	const (
		size        = 64 << 20
		partSize    = s3.MinPartSize
		concurrency = 2
	)
	// Warm up connections and lazily built SDK state.
	if _, err := st.Put(t.Context(), "warm", stream(5, 11<<20)); err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := st.Put(t.Context(), "big", stream(6, size))
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("Put = %d, %v", n, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	limit := uint64(partSize * (concurrency + 5))
	t.Logf("allocated %.1f MiB uploading %d MiB (limit %.0f MiB)", float64(alloc)/(1<<20), size>>20, float64(limit)/(1<<20))
	if alloc > limit {
		t.Fatalf("Put allocated %d bytes for a %d byte stream, want <= %d", alloc, size, limit)
	}
}

// TestGetStalls: an endpoint that stops answering in the middle of a
// download (or before its response) fails the Get after ReadStall, naming
// the stall, instead of hanging a restore for ever. Storage comes back
// later; by then the read must have failed.
func TestGetStalls(t *testing.T) {
	srv := testenv.S3(t)
	proxy := testenv.FreezingProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	st, err := s3.New(t.Context(), s3.Options{
		Bucket: srv.Bucket, Prefix: "stall", Region: srv.Region, Endpoint: "http://" + proxy.Addr,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PartSize: s3.MinPartSize, Concurrency: 2,
		ReadStall: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	const key = "20261125-020000-k3f9/20261125-020000-k3f9.dump.zst"
	if _, err := st.Put(t.Context(), key, stream(7, 64<<20)); err != nil {
		t.Fatal(err)
	}
	// readOut reads r to its end or error, at most 20 s.
	readOut := func(r io.Reader) error {
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, r)
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("still reading 20 s later")
		}
	}
	// freezeFor stops the endpoint answering for d; thawed waits for it.
	freezeFor := func(d time.Duration) {
		proxy.Frozen.Store(true)
		go func() {
			time.Sleep(d)
			proxy.Frozen.Store(false)
		}()
	}
	thawed := func() {
		for proxy.Frozen.Load() {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// started opens the object and reads its first KiB.
	started := func(t *testing.T) io.Reader {
		body, err := st.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { body.Close() })
		if _, err := io.ReadFull(body, make([]byte, 1<<10)); err != nil {
			t.Fatal(err)
		}
		return body
	}

	t.Run("reader pauses", func(t *testing.T) {
		// The clock runs only while a Read waits: a reader that pauses
		// (pg_restore waiting for a lock on its target) is not S3 stalling.
		body := started(t)
		time.Sleep(2500 * time.Millisecond)
		if err := readOut(body); err != nil {
			t.Fatalf("read after the reader paused for longer than ReadStall: %v", err)
		}
	})

	t.Run("body resumes", func(t *testing.T) {
		// A connection dropped without a word looks exactly like a
		// stall: once the endpoint answers again the read goes on from
		// where it was.
		body := started(t)
		freezeFor(2 * time.Second)
		if err := readOut(body); err != nil {
			t.Fatalf("read of a body stalled for 2 s: %v; want it resumed", err)
		}
		thawed()
	})

	t.Run("body gives up", func(t *testing.T) {
		// Frozen past the stall and the resume: resumes stop once the
		// endpoint has not answered them for ReadStall, not after three
		// requests that each wait that long (four times the bound).
		body := started(t)
		proxy.Frozen.Store(true)
		err := readOut(body)
		proxy.Frozen.Store(false)
		t.Logf("read: %v", err)
		if err == nil || !strings.Contains(err.Error(), "stalled: no data for 1s") || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "gave up at byte ") || !strings.Contains(err.Error(), "resuming got no answer within 1s") || strings.Count(err.Error(), "stalled") != 1 {
			t.Fatalf("read of a body stalled for good: %v; want the stall named with the key, the offset and the resume bound", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		// list, latest and prune list the bucket: an endpoint that stops
		// answering must fail them too, not hang them.
		freezeFor(30 * time.Second) // past every attempt the SDK makes (3 x 1 s, plus backoff)
		errc := make(chan error, 1)
		go func() {
			_, err := st.List(t.Context(), "")
			errc <- err
		}()
		select {
		case err := <-errc:
			if err == nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
				t.Fatalf("List from a stalled endpoint: %v; want the timeout", err)
			}
			// Once: retried, it took three stalls (1.5 h at the default).
			if strings.Contains(err.Error(), "maximum number of attempts") {
				t.Fatalf("List from a stalled endpoint was retried after a stall: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("List from a stalled endpoint still waiting 60 s later")
		}
		proxy.Frozen.Store(false)
	})

	t.Run("response", func(t *testing.T) {
		freezeFor(3 * time.Second)
		errc := make(chan error, 1)
		go func() {
			body, err := st.Get(t.Context(), key)
			if err == nil {
				err = readOut(body)
				body.Close()
			}
			errc <- err
		}()
		select {
		case err := <-errc:
			if err == nil || !strings.Contains(err.Error(), "stalled: no data for 1s") {
				t.Fatalf("Get from a stalled endpoint: %v; want the stall named", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Get from a stalled endpoint still waiting 30 s later")
		}
	})
}
