package dump_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/schedule"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
	"github.com/pgbackups/pgbackups/storage/s3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

func fileStore(t *testing.T) *file.Store {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func s3Store(t *testing.T) (*s3.Store, testenv.S3Server) {
	t.Helper()
	srv := testenv.S3(t)
	st, err := s3.New(context.Background(), s3.Options{
		Bucket: srv.Bucket, Prefix: "prod/app", Region: srv.Region, Endpoint: srv.Endpoint,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		PartSize: 5 << 20, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}

func options(t *testing.T, pg *testenv.Postgres, db string, st storage.Store) dump.CaptureOptions {
	t.Helper()
	conn, err := dump.ParseConn(pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	return dump.CaptureOptions{Conn: conn, Store: st, PgBinDir: pg.BinDir, CompressionLevel: 3, LockWaitTimeout: 5 * time.Second}
}

// restoreInto decompresses the stored backup and feeds it to the real
// pg_restore, checking the manifest's checksums on the way.
func restoreInto(t *testing.T, pg *testenv.Postgres, st storage.Store, m storage.Manifest, db string) {
	t.Helper()
	ctx := context.Background()
	rc, err := st.Get(ctx, m.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	stored := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(rc, stored))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	archive := t.TempDir() + "/restore.dump"
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	dumped := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, dumped), dec)
	f.Close()
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	io.Copy(io.Discard, io.TeeReader(rc, stored)) // whatever follows the frame
	if n != m.DumpBytes {
		t.Errorf("decompressed %d bytes, manifest says %d", n, m.DumpBytes)
	}
	if got := hex.EncodeToString(dumped.Sum(nil)); got != m.DumpSHA256 {
		t.Errorf("dump sha256 %s, manifest says %s", got, m.DumpSHA256)
	}
	if got := hex.EncodeToString(stored.Sum(nil)); got != m.SHA256 {
		t.Errorf("stored sha256 %s, manifest says %s", got, m.SHA256)
	}
	cmd := exec.Command(pg.Tool("pg_restore"), "--no-owner", "--exit-on-error", "--dbname="+pg.URL(db), archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
}

func TestCaptureRoundTrip(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 300_000)
	want := pg.TableChecksums(t, db)

	stores := map[string]func(t *testing.T) storage.Store{
		"file": func(t *testing.T) storage.Store { return fileStore(t) },
		"s3":   func(t *testing.T) storage.Store { st, _ := s3Store(t); return st },
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			st := mk(t)
			m, err := dump.Capture(context.Background(), options(t, pg, db, st))
			if err != nil {
				t.Fatal(err)
			}
			if m.Status != storage.StatusCompleted || m.Database != db || m.DumpBytes == 0 || m.StoredBytes == 0 || m.StoredBytes >= m.DumpBytes {
				t.Fatalf("manifest looks wrong: %+v", m)
			}
			if !strings.HasPrefix(m.ServerVersion, strings.Split(m.PgDumpVersion, ".")[0]) {
				t.Errorf("server %s dumped with pg_dump %s", m.ServerVersion, m.PgDumpVersion)
			}
			// Every object of the backup carries its id.
			objs, err := st.List(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if !strings.Contains(o.Key, m.ID) {
					t.Errorf("object %s does not name backup %s", o.Key, m.ID)
				}
			}
			got, err := storage.Catalog{Store: st}.Manifests(context.Background(), false)
			if err != nil || len(got) != 1 || got[0].ID != m.ID || got[0].SHA256 != m.SHA256 {
				t.Fatalf("catalog lists %+v, %v; want the one backup", got, err)
			}
			target := pg.CreateDB(t)
			restoreInto(t, pg, st, m, target)
			if d := testenv.DiffChecksums(want, pg.TableChecksums(t, target)); d != "" {
				t.Fatalf("restored data differs:\n%s", d)
			}
		})
	}
}

// assertNothingListed checks a failed capture left no visible backup and no
// data object, only (where storage allowed) a manifest saying it failed.
func assertNothingListed(t *testing.T, st storage.Store, m storage.Manifest) {
	t.Helper()
	ctx := context.Background()
	cat := storage.Catalog{Store: st}
	ms, err := cat.Manifests(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("a failed capture is listed: %+v", ms)
	}
	if m.ID == "" {
		return
	}
	if rc, err := st.Get(ctx, storage.DataKey(m.ID)); !errors.Is(err, storage.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("data object of failed backup %s: err %v, want not found", m.ID, err)
	}
	objs, _ := st.List(ctx, "")
	for _, o := range objs {
		if o.Key != storage.ManifestKey(m.ID) {
			t.Errorf("left behind: %s", o.Key)
		}
	}
}

// slowThrottle lets the dump start, then reads slowly so a test can act
// mid-dump; started is closed once some bytes went through.
func slowThrottle(started chan struct{}) func(io.Reader) io.Reader {
	var once sync.Once
	return func(r io.Reader) io.Reader {
		return readerFunc(func(p []byte) (int, error) {
			if len(p) > 4096 {
				p = p[:4096]
			}
			n, err := r.Read(p)
			once.Do(func() { close(started) })
			time.Sleep(2 * time.Millisecond)
			return n, err
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestCaptureFailures(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 50_000)

	t.Run("pg_dump exits non-zero", func(t *testing.T) {
		st := fileStore(t)
		o := options(t, pg, db, st)
		o.LockWaitTimeout = 200 * time.Millisecond
		// A session holding an exclusive lock makes pg_dump's lock wait time out.
		unlock := lockTable(t, pg, db, "app.users")
		m, err := dump.Capture(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "LOCK TABLE app.users") || !strings.Contains(err.Error(), "PGBACKUPS_LOCK_WAIT_TIMEOUT") {
			t.Fatalf("err = %v, want pg_dump's lock timeout with its stderr", err)
		}
		unlock()
		assertNothingListed(t, st, m)
		assertFailedRecorded(t, st, m, "LOCK_WAIT_TIMEOUT")
	})

	t.Run("pg_dump killed", func(t *testing.T) {
		st, srv := s3Store(t)
		o := options(t, pg, db, st)
		started := make(chan struct{})
		o.Throttle = slowThrottle(started)
		o.Started = func(pid int, _ *slog.Logger) {
			go func() {
				<-started
				syscall.Kill(pid, syscall.SIGKILL)
			}()
		}
		m, err := dump.Capture(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "pg_dump") || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("err = %v, want pg_dump killed", err)
		}
		assertNothingListed(t, st, m)
		assertNoMultipart(t, srv)
	})

	t.Run("server goes away", func(t *testing.T) {
		own := testenv.NewCluster(t)
		odb := own.CreateDB(t)
		own.SeedRich(t, odb, 50_000)
		st := fileStore(t)
		o := options(t, own, odb, st)
		started, ended := make(chan struct{}), make(chan struct{})
		o.Throttle = slowThrottle(started)
		stopped := make(chan error, 1)
		go func() {
			select {
			case <-started:
				stopped <- own.Stop()
			case <-ended:
			}
		}()
		m, err := dump.Capture(context.Background(), o)
		close(ended)
		select {
		case <-started:
		default:
			t.Fatalf("the capture ended before pg_dump's output was read: %v", err)
		}
		select {
		case serr := <-stopped:
			if serr != nil {
				t.Fatal(serr)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the server did not stop within 2 minutes")
		}
		if err == nil || !strings.Contains(err.Error(), "pg_dump") {
			t.Fatalf("err = %v, want pg_dump failing as its server backend dies", err)
		}
		assertNothingListed(t, st, m)
	})

	t.Run("storage fails", func(t *testing.T) {
		st := &failingStore{Store: fileStore(t), after: 64 << 10}
		m, err := dump.Capture(context.Background(), options(t, pg, db, st))
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("err = %v, want the storage error", err)
		}
		assertNothingListed(t, st.Store, m)
	})

	t.Run("context cancelled", func(t *testing.T) {
		st, srv := s3Store(t)
		o := options(t, pg, db, st)
		started := make(chan struct{})
		o.Throttle = slowThrottle(started)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-started
			time.Sleep(100 * time.Millisecond)
			cancel()
		}()
		m, err := dump.Capture(ctx, o)
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertNothingListed(t, st, m)
		assertNoMultipart(t, srv)
		assertFailedRecorded(t, st, m, "cancel")
	})

	t.Run("storage stalls", func(t *testing.T) {
		// A real S3 server behind a proxy that stops forwarding: connections
		// stay open and nothing answers, as with a wedged gateway.
		st, proxy := proxiedS3Store(t)
		o := options(t, pg, db, st)
		o.StallTimeout = 2 * time.Second
		started := make(chan struct{})
		o.Throttle = slowThrottle(started)
		var progress atomic.Int64
		o.Progress = &progress
		done := captureAsync(o)
		select {
		case <-started:
		case r := <-done:
			t.Fatalf("the capture ended before pg_dump's output was read: %v", r.err)
		}
		proxy.Frozen.Store(true)
		// Once no byte has moved for longer than the stall timeout, the
		// backup must have been aborted: storage comes back (so recording
		// the failure does not wait out its own timeout), and without the
		// abort the upload would now simply complete. The bytes still
		// moving after the freeze fill the pipe and the upload's parts in
		// seconds; two minutes bound the wait for that.
		last, since, frozen := progress.Load(), time.Now(), time.Now()
		for time.Since(since) < 4*time.Second {
			if time.Since(frozen) > 2*time.Minute {
				proxy.Frozen.Store(false)
				t.Fatalf("the dump still moved 2 minutes after storage froze (%d bytes read): nothing holds it back", last)
			}
			time.Sleep(100 * time.Millisecond)
			if n := progress.Load(); n != last {
				last, since = n, time.Now()
			}
		}
		proxy.Frozen.Store(false)
		var r captured
		select {
		case r = <-done:
		case <-time.After(time.Minute):
			t.Fatal("capture still running a minute after storage came back (stall timeout 2s)")
		}
		m, err := r.m, r.err
		if err == nil || !strings.Contains(err.Error(), "no progress for 2s (PGBACKUPS_STALL_TIMEOUT)") {
			t.Fatalf("err = %v, want the stall named", err)
		}
		assertNothingListed(t, st, m)
		assertFailedRecorded(t, st, m, "no progress")
	})

	t.Run("storage hung before the dump", func(t *testing.T) {
		// The endpoint is wedged when the run starts: the location check
		// before pg_dump must give up after the stall timeout, not hang
		// holding the backup lock. Storage comes back a second later; by
		// then the capture must have failed (without the bound it would
		// now simply go on and succeed).
		st, proxy := proxiedS3Store(t)
		o := options(t, pg, db, st)
		o.StallTimeout = 2 * time.Second
		proxy.Frozen.Store(true)
		go func() {
			time.Sleep(3 * time.Second)
			proxy.Frozen.Store(false)
		}()
		m, err := dump.Capture(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "storage did not answer for 2s (PGBACKUPS_STALL_TIMEOUT)") {
			t.Fatalf("err = %v, want the hung storage named", err)
		}
		assertNothingListed(t, st, m)
	})

	t.Run("manifest write hangs", func(t *testing.T) {
		// The dump is stored; the manifest's write never returns.
		inner := fileStore(t)
		st := &hangingManifestStore{Store: inner}
		o := options(t, pg, db, st)
		o.StallTimeout = 2 * time.Second
		var r captured
		select {
		case r = <-captureAsync(o):
		case <-time.After(time.Minute):
			t.Fatal("capture still running a minute after its manifest write hung (stall timeout 2s)")
		}
		m, err := r.m, r.err
		if err == nil || !strings.Contains(err.Error(), "storage did not answer for 2s (PGBACKUPS_STALL_TIMEOUT)") {
			t.Fatalf("err = %v, want the hung storage named", err)
		}
		if ms, err := (storage.Catalog{Store: inner}).Manifests(context.Background(), false); err != nil || len(ms) != 0 {
			t.Fatalf("a failed capture is listed: %+v, %v", ms, err)
		}
		assertFailedRecorded(t, inner, m, "PGBACKUPS_STALL_TIMEOUT")
		// Its data stays: the hung write may land yet (next subtest);
		// retention removes it with the failed record.
		if _, err := os.Stat(inner.Location(storage.DataKey(m.ID))); err != nil {
			t.Fatalf("data object of the backup whose manifest write hung: %v, want it kept", err)
		}
	})

	t.Run("manifest lands late", func(t *testing.T) {
		// The completed manifest's write times out, and lands after the
		// failed record: a complete backup, which must have its data.
		inner := fileStore(t)
		st := &lateManifestStore{Store: inner}
		m, err := dump.Capture(context.Background(), options(t, pg, db, st))
		if err == nil {
			t.Fatal("capture succeeded, want its manifest write's error")
		}
		got, err := storage.Catalog{Store: inner}.Manifest(context.Background(), m.ID)
		if err != nil || !got.OK() {
			t.Fatalf("the late manifest: %+v, %v; want it completed", got, err)
		}
		if err := (storage.Catalog{Store: inner}).Damage(context.Background(), got); err != nil {
			t.Fatalf("the backup whose manifest landed late: %v", err)
		}
		if _, err := dump.CopyBackup(context.Background(), inner, got, nil, io.Discard); err != nil {
			t.Fatalf("the backup whose manifest landed late does not read back: %v", err)
		}
	})

	t.Run("store fails before pg_dump writes", func(t *testing.T) {
		// pg_dump writes nothing until it holds every table's lock; here
		// it waits for one for up to a minute. A store that fails at once
		// must stop it then, and report the store's error, not pg_dump's
		// lock timeout a minute later.
		st := &refusingStore{Store: fileStore(t)}
		o := options(t, pg, db, st)
		o.LockWaitTimeout = time.Minute
		unlock := lockTable(t, pg, db, "app.users")
		// Waiting out the lock wait returns the store's error too, a minute
		// later: only the time tells them apart. Half the lock wait bounds
		// a hang; stopping pg_dump takes well under a second.
		var r captured
		select {
		case r = <-captureAsync(o):
		case <-time.After(o.LockWaitTimeout / 2):
			t.Fatalf("capture still running %s after its store refused the upload: pg_dump was left waiting for its lock (PGBACKUPS_LOCK_WAIT_TIMEOUT=%s)", o.LockWaitTimeout/2, o.LockWaitTimeout)
		}
		m, err := r.m, r.err
		if err == nil || !strings.Contains(err.Error(), "read-only file system") || strings.Contains(err.Error(), "LOCK") {
			t.Fatalf("err = %v, want the store's error", err)
		}
		unlock()
		assertFailedRecorded(t, st, m, "read-only file system")
	})

	t.Run("database unreachable", func(t *testing.T) {
		st := fileStore(t)
		conn, err := dump.ParseConn("postgres://app:hunter2-secret@127.0.0.1:1/nosuchdb?sslmode=disable&connect_timeout=3")
		if err != nil {
			t.Fatal(err)
		}
		_, err = dump.Capture(context.Background(), dump.CaptureOptions{Conn: conn, Store: st, CompressionLevel: 3})
		if err == nil {
			t.Fatal("capture of an unreachable database succeeded")
		}
		msg := err.Error()
		if strings.Contains(msg, "hunter2") || !strings.Contains(msg, "nosuchdb") || !strings.Contains(msg, "127.0.0.1:1") {
			t.Fatalf("error must name host and database and hide the password: %s", msg)
		}
		assertNothingListed(t, st, storage.Manifest{})
	})
}

// lockTable holds an ACCESS EXCLUSIVE lock on table in db until unlock is
// called or the test ends: pg_dump waits for it.
func lockTable(t *testing.T, pg *testenv.Postgres, db, table string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close(ctx) })
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	unlock = func() { tx.Rollback(ctx) }
	t.Cleanup(unlock)
	return unlock
}

func assertFailedRecorded(t *testing.T, st storage.Store, m storage.Manifest, cause string) {
	t.Helper()
	got, err := storage.Catalog{Store: st}.Manifest(context.Background(), m.ID)
	if err != nil {
		t.Fatalf("failed backup not recorded: %v", err)
	}
	if got.Status != storage.StatusFailed || !strings.Contains(got.Error, cause) {
		t.Fatalf("recorded %s / %q, want failed with %q", got.Status, got.Error, cause)
	}
}

func assertNoMultipart(t *testing.T, srv testenv.S3Server) {
	t.Helper()
	ups, err := srv.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left in progress", len(ups.Uploads))
	}
}

// captured is a capture's result.
type captured struct {
	m   storage.Manifest
	err error
}

// captureAsync runs a capture with o in the background; its result
// arrives on the channel.
func captureAsync(o dump.CaptureOptions) <-chan captured {
	done := make(chan captured, 1)
	go func() {
		m, err := dump.Capture(context.Background(), o)
		done <- captured{m, err}
	}()
	return done
}

// proxiedS3Store is a store on a real S3 server reached through a
// testenv.FreezingProxy.
func proxiedS3Store(t *testing.T) (*s3.Store, *testenv.Proxy) {
	t.Helper()
	srv := testenv.S3(t)
	p := testenv.FreezingProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	st, err := s3.New(context.Background(), s3.Options{
		Bucket: srv.Bucket, Prefix: "proxied", Region: srv.Region, Endpoint: "http://" + p.Addr,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PartSize: 5 << 20, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, p
}

// hangingManifestStore never answers the first write of a completed
// manifest, like a wedged endpoint: only its context ends it.
type hangingManifestStore struct {
	storage.Store
	hung atomic.Bool
}

func (h *hangingManifestStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") && h.hung.CompareAndSwap(false, true) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return h.Store.Put(ctx, key, r)
}

// lateManifestStore times out the first write of a completed manifest
// without storing it, and stores it after the next manifest write (the
// failed record): a PUT held up in the network, landing last.
type lateManifestStore struct {
	storage.Store
	held []byte
}

func (l *lateManifestStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if !strings.HasSuffix(key, ".manifest.json") {
		return l.Store.Put(ctx, key, r)
	}
	if l.held == nil {
		b, err := io.ReadAll(r)
		if err != nil {
			return 0, err
		}
		l.held = b
		return 0, fmt.Errorf("put %s: %w", key, context.DeadlineExceeded)
	}
	n, err := l.Store.Put(ctx, key, r)
	if err == nil {
		_, err = l.Store.Put(ctx, key, bytes.NewReader(l.held))
	}
	return n, err
}

// refusingStore fails every data upload at once, without reading it, as a
// read-only volume does.
type refusingStore struct{ storage.Store }

func (f *refusingStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") {
		return f.Store.Put(ctx, key, r)
	}
	return 0, errors.New("read-only file system")
}

// failingStore breaks the data upload after some bytes, like a disk filling
// or a network dropping.
type failingStore struct {
	storage.Store
	after int64
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") {
		return f.Store.Put(ctx, key, r)
	}
	return f.Store.Put(ctx, key, &breakingReader{r: r, left: f.after})
}

type breakingReader struct {
	r    io.Reader
	left int64
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("disk on fire")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// waitFor fails the test unless cond holds within 20 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !eventually(20*time.Second, cond) {
		t.Fatal("timed out waiting")
	}
}

// eventually polls cond every 20 ms until it holds or within has passed,
// and reports whether it held.
func eventually(within time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func TestCaptureRefusesToMixDatabases(t *testing.T) {
	pg := testenv.PG(t)
	a, b := pg.CreateDB(t), pg.CreateDB(t)
	st := fileStore(t)
	if _, err := dump.Capture(context.Background(), options(t, pg, a, st)); err != nil {
		t.Fatal(err)
	}
	_, err := dump.Capture(context.Background(), options(t, pg, b, st))
	if err == nil || !strings.Contains(err.Error(), `already holds backups of database "`+a+`"`) {
		t.Fatalf("err = %v, want a refusal naming %s", err, a)
	}
	if ms, _ := (storage.Catalog{Store: st}).Manifests(context.Background(), true); len(ms) != 1 || ms[0].Database != a {
		t.Fatalf("storage changed: %+v", ms)
	}
}

// TestCaptureRefusesToMixClusters: two clusters' databases of one name
// (staging's and production's "app") in one location would prune each
// other's backups, and `restore latest` could restore the other's data. The
// cluster's system identifier tells them apart; the manifest records it.
func TestCaptureRefusesToMixClusters(t *testing.T) {
	ctx := context.Background()
	one, two := testenv.PG(t), testenv.NewCluster(t)
	const name = "sameapp"
	for _, pg := range []*testenv.Postgres{one, two} {
		pg.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+name)
		pg.Exec(t, "postgres", "CREATE DATABASE "+name)
		t.Cleanup(func() { pg.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+name) })
	}
	st := fileStore(t)
	m, err := dump.Capture(ctx, options(t, one, name, st))
	if err != nil {
		t.Fatal(err)
	}
	if m.SystemID == "" {
		t.Fatal("the manifest records no system identifier")
	}
	if _, err := dump.Capture(ctx, options(t, one, name, st)); err != nil {
		t.Fatalf("a second capture of the same database: %v", err)
	}
	_, err = dump.Capture(ctx, options(t, two, name, st))
	if err == nil || !strings.Contains(err.Error(), "of another cluster (system identifier "+m.SystemID) || !strings.Contains(err.Error(), "capture --new-cluster") {
		t.Fatalf("err = %v, want a refusal naming the other cluster and the way on after an upgrade", err)
	}
	if ms, _ := (storage.Catalog{Store: st}).Manifests(ctx, true); len(ms) != 2 {
		t.Fatalf("storage changed: %d manifests", len(ms))
	}

	// The same database after pg_upgrade (a new system identifier): one
	// capture --new-cluster, and backups go on there; the old cluster's
	// are now the ones refused.
	o := options(t, two, name, st)
	o.NewCluster = true
	if _, err := dump.Capture(ctx, o); err != nil {
		t.Fatalf("capture --new-cluster: %v", err)
	}
	if _, err := dump.Capture(ctx, options(t, two, name, st)); err != nil {
		t.Fatalf("a capture after --new-cluster: %v", err)
	}
	if _, err := dump.Capture(ctx, options(t, one, name, st)); err == nil || !strings.Contains(err.Error(), "of another cluster") {
		t.Fatalf("the old cluster's capture after the location moved on: err = %v, want a refusal naming the other cluster", err)
	}
}

// manifestFailingStore fails the first manifest write, as S3 might on a
// timeout, and records nothing for it.
type manifestFailingStore struct {
	storage.Store
	failed bool
}

func (f *manifestFailingStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasSuffix(key, ".manifest.json") && !f.failed {
		f.failed = true
		io.Copy(io.Discard, r)
		return 0, errors.New("manifest write timed out")
	}
	return f.Store.Put(ctx, key, r)
}

func TestCaptureManifestWriteFails(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 1000)
	inner := fileStore(t)
	st := &manifestFailingStore{Store: inner}
	m, err := dump.Capture(context.Background(), options(t, pg, db, st))
	if err == nil || !strings.Contains(err.Error(), "manifest write timed out") {
		t.Fatalf("err = %v, want the manifest write error", err)
	}
	// The failure is recorded, and nothing is listed as a backup. The
	// data stays, for the write may land yet (lateManifestStore); the
	// first retention pass after a good backup removes it with the record.
	if ms, err := (storage.Catalog{Store: inner}).Manifests(context.Background(), false); err != nil || len(ms) != 0 {
		t.Fatalf("a failed capture is listed: %+v, %v", ms, err)
	}
	assertFailedRecorded(t, inner, m, "manifest write timed out")
	if _, err := dump.Capture(context.Background(), options(t, pg, db, inner)); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Prune(context.Background(), storage.Catalog{Store: inner}, storage.PruneOptions{Policy: schedule.Policy{KeepLast: 1}, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	objs, err := inner.List(context.Background(), m.ID+"/")
	if err != nil || len(objs) != 0 {
		t.Fatalf("after retention, the failed backup's objects: %+v, %v; want none", objs, err)
	}
}

// TestMonitorsStopWithPgDump: the monitors watch pg_dump and its backend,
// so they stop when pg_dump exits, not when the upload's tail is done (on
// S3 the last parts can take many seconds: the watchdog then warned that
// the backend had vanished, the adaptive rate sampled for nothing). Here
// the upload holds at the end of the stream until the monitor has stopped.
func TestMonitorsStopWithPgDump(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 1000)
	stopped := make(chan struct{})
	st := &tailStore{Store: fileStore(t), wait: stopped}
	o := options(t, pg, db, st)
	o.Monitors = []dump.Monitor{func(ctx context.Context, r dump.Running) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}}
	if _, err := dump.Capture(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if !st.waited.Load() {
		t.Error("the monitor was still running 10 s after pg_dump's output ended: monitors stop with the upload, not with pg_dump")
	}
}

// tailStore holds the data upload at the end of its stream until wait is
// closed (at most 10 s), as the last parts of an S3 upload do.
type tailStore struct {
	storage.Store
	wait   chan struct{}
	waited atomic.Bool
}

func (s *tailStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if !strings.HasSuffix(key, ".dump.zst") { // the manifest, the globals
		return s.Store.Put(ctx, key, r)
	}
	return s.Store.Put(ctx, key, readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		if err == io.EOF {
			select {
			case <-s.wait:
				s.waited.Store(true)
			case <-time.After(10 * time.Second):
			}
		}
		return n, err
	}))
}
