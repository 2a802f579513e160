package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helperStartAndDie()
	}
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func TestS3(t *testing.T) {
	a := S3(t)
	b := S3(t)
	if a.Bucket == b.Bucket {
		t.Fatalf("two calls share bucket %s", a.Bucket)
	}
	if a.Endpoint != b.Endpoint {
		t.Fatalf("two servers: %s and %s", a.Endpoint, b.Endpoint)
	}
	if !strings.HasPrefix(a.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %s not on loopback", a.Endpoint)
	}

	ctx := t.Context()
	client := a.Client()
	want := []byte("hello")
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(a.Bucket), Key: aws.String("k"), Body: bytes.NewReader(want),
	}); err != nil {
		t.Fatal(err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.Bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}

	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 0 {
		t.Fatalf("fresh bucket %s holds %d objects", b.Bucket, len(list.Contents))
	}
}

func TestS3Env(t *testing.T) {
	s := S3Server{
		Endpoint: "http://127.0.0.1:1234", Bucket: "bkt", Prefix: "/p/q/",
		AccessKey: "ak", SecretKey: "sk", Region: "us-east-1",
	}
	want := []string{
		"AWS_ENDPOINT_URL_S3=http://127.0.0.1:1234",
		"AWS_ACCESS_KEY_ID=ak",
		"AWS_SECRET_ACCESS_KEY=sk",
		"AWS_REGION=us-east-1",
		"PGBACKUPS_STORAGE_URL=s3://bkt/p/q",
	}
	if got := s.Env(); !slices.Equal(got, want) {
		t.Fatalf("Env() = %q, want %q", got, want)
	}
	s.Prefix = ""
	if got := s.Env()[4]; got != "PGBACKUPS_STORAGE_URL=s3://bkt" {
		t.Fatalf("no prefix: %s", got)
	}
}

func TestBucketName(t *testing.T) {
	for _, name := range []string{
		"TestX",
		"TestPut/multi_part/12MiB",
		"Test" + strings.Repeat("VeryLong_", 20),
		"___",
		"TestÜnicode/名前",
	} {
		b := bucketName(name, 12345)
		if len(b) < 3 || len(b) > 63 {
			t.Errorf("bucketName(%q) = %q: length %d", name, b, len(b))
		}
		for i, c := range b {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(b)-1
			if !ok || strings.Contains(b, "--") {
				t.Errorf("bucketName(%q) = %q: bad character at %d", name, b, i)
				break
			}
		}
	}
	if a, b := bucketName("T", 1), bucketName("T", 1); a == b {
		t.Errorf("bucketName not unique: %s", a)
	}
}

// TestCleanup stops the shared server and checks the process and its data
// are gone; a later S3 call starts a new one.
func TestCleanup(t *testing.T) {
	S3(t)
	gw.mu.Lock()
	srv := gw.srv
	gw.mu.Unlock()

	Cleanup()
	select {
	case <-srv.exited:
	default:
		t.Fatal("versitygw still running after Cleanup")
	}
	if _, err := os.Stat(srv.dir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s left behind: %v", srv.dir, err)
	}
	Cleanup() // idempotent

	s := S3(t)
	if s.Endpoint == srv.endpoint {
		t.Logf("new server reused port %s", s.Endpoint)
	}
}

const helperEnv = "PGBACKUPS_TESTENV_HELPER"

// helperStartAndDie runs in a child test binary: start versitygw, print its
// pid and dir, and exit without Cleanup, as a crashed test binary would.
func helperStartAndDie() {
	bin, err := findVersityGW()
	if err != nil {
		fmt.Println("skip", err)
		os.Exit(0)
	}
	srv, err := startVersityGW(bin)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", srv.cmd.Process.Pid, srv.dir)
	os.Exit(0)
}

// TestPdeathsig checks that versitygw dies with a test binary that never
// called Cleanup.
func TestPdeathsig(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) > 0 && f[0] == "skip" {
		if os.Getenv("CI") == "true" { // as S3 does: CI installs versitygw
			t.Fatalf("helper: %s", out)
		}
		t.Skip(string(out))
	}
	if len(f) != 3 || f[0] != "pid" {
		t.Fatalf("helper said %q", out)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(f[2]) })

	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			p, _ := os.FindProcess(pid)
			p.Kill()
			t.Fatalf("versitygw pid %d outlived its parent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie nobody reaped yet counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces, so read after the last ')'.
	s := string(b)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	state := strings.Fields(rest)
	return len(state) > 0 && state[0] != "Z" && state[0] != "X"
}
