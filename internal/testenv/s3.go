package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/internal/forkthread"
)

// S3Server is a bucket on a real S3-compatible server (VersityGW) that lives
// as long as the test binary.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string // fresh for each call to S3
	Prefix    string // prefix Env puts in PGBACKUPS_STORAGE_URL; "backups"
	AccessKey string
	SecretKey string
	Region    string // us-east-1
}

// Env returns the variables a pgbackups binary under test needs to reach the
// server: AWS_ENDPOINT_URL_S3, static credentials, AWS_REGION and
// PGBACKUPS_STORAGE_URL=s3://Bucket/Prefix.
func (s S3Server) Env() []string {
	url := "s3://" + s.Bucket
	if p := strings.Trim(s.Prefix, "/"); p != "" {
		url += "/" + p
	}
	return []string{
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		"PGBACKUPS_STORAGE_URL=" + url,
	}
}

// Client returns an SDK client for the server, for tests that inspect the
// bucket behind a store's back (leftover multipart uploads, raw keys).
func (s S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:               aws.String(s.Endpoint),
		Region:                     s.Region,
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// VersityGWEnv names the variable that points at the versitygw binary.
const VersityGWEnv = "PGBACKUPS_TEST_VERSITYGW"

// versitygw is the one server process of a test binary.
type versitygw struct {
	cmd       *exec.Cmd
	exited    chan struct{} // closed once cmd.Wait returned
	dir       string        // temp dir holding data/ and versitygw.log
	endpoint  string
	accessKey string
	secretKey string
}

// gw is the server shared by the tests of one binary. A mutex rather than a
// sync.Once so that S3 after Cleanup starts a new server instead of handing
// out a dead endpoint.
var gw struct {
	mu      sync.Mutex
	srv     *versitygw
	missing error // binary not found: skip, or fail on CI
	buckets int
}

// S3 returns a fresh bucket on a VersityGW server started on first use and
// shared by every test of the binary. A package whose tests call S3 must
// call Cleanup after m.Run in its TestMain, or the server lingers until the
// test binary exits (on Linux the kernel then kills it; see sysProcAttr).
//
// Without the versitygw binary the test is skipped, or fails when CI=true.
func S3(t testing.TB) S3Server {
	t.Helper()
	srv, n, err := sharedVersityGW()
	if errors.Is(err, errNoVersityGW) {
		noVersityGW(t, err)
	}
	if err != nil {
		t.Fatalf("testenv: start versitygw: %v", err)
	}
	return newBucket(t, srv, n)
}

// noVersityGW skips the test, or fails it when CI=true, for want of the
// versitygw binary (err says where it was looked for).
func noVersityGW(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("testenv: %v; install it with\n"+
		"\tGOBIN=$HOME/.cache/pgbackups/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0\n"+
		"or put it on PATH, or set %s to its path", err, VersityGWEnv)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// newBucket creates bucket number n of the test on srv.
func newBucket(t testing.TB, srv *versitygw, n int) S3Server {
	t.Helper()
	s := S3Server{
		Endpoint:  srv.endpoint,
		Bucket:    bucketName(t.Name(), n),
		Prefix:    "backups",
		AccessKey: srv.accessKey,
		SecretKey: srv.secretKey,
		Region:    "us-east-1",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v%s", s.Bucket, err, srv.logTail())
	}
	return s
}

// Cleanup stops everything testenv started for this test binary: the
// VersityGW server and its data, and the PostgreSQL clusters
// (CleanupPostgres). It is safe to call more than once. Call it from
// TestMain after m.Run:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testenv.Cleanup()
//		os.Exit(code)
//	}
func Cleanup() {
	CleanupPostgres()
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.srv != nil {
		gw.srv.stop()
		gw.srv = nil
	}
}

// sharedVersityGW returns the running server, starting it if need be, and a
// number unique to this call for naming the bucket. A failed start is not
// remembered: each test reports its own attempt.
func sharedVersityGW() (*versitygw, int, error) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	gw.buckets++
	if gw.srv != nil {
		return gw.srv, gw.buckets, nil
	}
	if gw.missing != nil {
		return nil, 0, gw.missing
	}
	bin, err := findVersityGW()
	if err != nil {
		gw.missing = err
		return nil, 0, err
	}
	srv, err := startVersityGW(bin)
	if err != nil {
		return nil, 0, err
	}
	gw.srv = srv
	return srv, gw.buckets, nil
}

var errNoVersityGW = errors.New("versitygw not found")

// findVersityGW looks in $PGBACKUPS_TEST_VERSITYGW, the pgbackups cache
// ($XDG_CACHE_HOME or $HOME/.cache)/pgbackups/bin/versitygw, then PATH.
func findVersityGW() (string, error) {
	if p := os.Getenv(VersityGWEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %w", errNoVersityGW, VersityGWEnv, p, err)
		}
		return p, nil
	}
	var tried []string
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "pgbackups", "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		tried = append(tried, p)
	}
	p, err := exec.LookPath("versitygw")
	if err == nil {
		return p, nil
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("%w (looked in %s)", errNoVersityGW, strings.Join(tried, ", "))
}

func startVersityGW(bin string) (*versitygw, error) {
	dir, err := os.MkdirTemp("", "pgbackups-versitygw-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port picked by binding :0 and closing can be taken by someone else
	// before versitygw binds it; a few attempts make that race harmless.
	var errs []error
	for range 3 {
		srv, err := launch(bin, dir, data)
		if err == nil {
			return srv, nil
		}
		errs = append(errs, err)
	}
	os.RemoveAll(dir)
	return nil, errors.Join(errs...)
}

func launch(bin, dir, data string) (*versitygw, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	srv := &versitygw{
		exited:    make(chan struct{}),
		dir:       dir,
		endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		accessKey: "pgbackups" + randomHex(6),
		secretKey: randomHex(20),
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, "--quiet", "--port", fmt.Sprintf("127.0.0.1:%d", port), "posix", data)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY="+srv.accessKey,
		"ROOT_SECRET_KEY="+srv.secretKey,
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := forkthread.Start(cmd); err != nil {
		return nil, err
	}
	srv.cmd = cmd
	go func() {
		cmd.Wait()
		close(srv.exited)
	}()

	if err := srv.waitReady(30 * time.Second); err != nil {
		srv.kill()
		return nil, fmt.Errorf("%s on port %d: %w%s", bin, port, err, srv.logTail())
	}
	return srv, nil
}

// waitReady polls until the server answers HTTP at all (an unsigned request
// gets 403, which is an answer), the process exits, or timeout passes.
func (v *versitygw) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-v.exited:
			return fmt.Errorf("exited early: %v", v.cmd.ProcessState)
		default:
		}
		resp, err := client.Get(v.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer after %s", timeout)
}

func (v *versitygw) kill() {
	v.cmd.Process.Kill()
	<-v.exited
}

func (v *versitygw) stop() {
	v.kill()
	os.RemoveAll(v.dir)
}

// logTail returns the end of the server's log, for error messages.
func (v *versitygw) logTail() string {
	b, err := os.ReadFile(filepath.Join(v.dir, "versitygw.log"))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return "\nversitygw log:\n" + string(b)
}

func freePort() (int, error) { return FreePort() }

// FreePort returns a port on 127.0.0.1 free a moment ago, for a server
// that must be told its port before it listens (prefer listening on port
// 0 where the server allows it). It is taken below the kernel's ephemeral
// range where it can: a port the kernel hands out (to a listener on port
// 0, or to an outgoing connection of a test running beside this one)
// could be taken again before the server listens on it; one outside that
// range only by a process asking for it by number.
func FreePort() (int, error) {
	if low := ephemeralLow(); low > 10000 {
		for range 100 {
			port := 10000 + mrand.IntN(low-10000)
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the lowest port of Linux's ephemeral range, 0 if unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, _ := strconv.Atoi(f[0])
	return low
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// bucketName makes a valid, unique bucket name from a test name:
// lowercase letters, digits and hyphens, 3 to 63 characters.
func bucketName(testName string, n int) string {
	var b strings.Builder
	for _, c := range strings.ToLower(testName) {
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
				b.WriteByte('-')
			}
		}
	}
	suffix := fmt.Sprintf("-%d-%s", n, randomHex(3))
	base := strings.Trim(b.String(), "-")
	if room := 63 - len("t-") - len(suffix); len(base) > room {
		base = strings.TrimRight(base[:room], "-")
	}
	if base == "" {
		return "t" + suffix
	}
	return "t-" + base + suffix
}
