package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
)

// daemonProc is the built binary running as a daemon.
type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string // http://127.0.0.1:PORT
	logs *lockedBuffer
	done chan struct{}
	code int
}

// lockedBuffer is the daemon's stderr, written by exec's copying goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startDaemon runs `pgbackups daemon` with exactly env (plus PATH, HOME and
// its HTTP address), like run does, and kills it when the test ends if it
// is still running.
func startDaemon(t *testing.T, env []string) *daemonProc {
	t.Helper()
	port := freeTCPPort(t)
	p := &daemonProc{t: t, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "daemon")
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		fmt.Sprintf("PGBACKUPS_HTTP_ADDR=127.0.0.1:%d", port)}, env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", p.logs)
		}
	})
	return p
}

// health GETs /healthz; code 0 means the daemon did not answer.
func (p *daemonProc) health() (int, daemon.Health) {
	var h daemon.Health
	resp, err := http.Get(p.url + "/healthz")
	if err != nil {
		return 0, h
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		p.t.Fatalf("/healthz body: %v", err)
	}
	return resp.StatusCode, h
}

// metrics GETs /metrics as name{labels} -> value.
func (p *daemonProc) metrics() map[string]float64 {
	p.t.Helper()
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		p.t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(line[i+1:], &v)
		out[line[:i]] = v
	}
	return out
}

// waitHealth polls /healthz until ok says so, or fails after timeout.
func (p *daemonProc) waitHealth(what string, timeout time.Duration, ok func(code int, h daemon.Health) bool) (int, daemon.Health) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, h := p.health()
		if ok(code, h) {
			return code, h
		}
		select {
		case <-p.done:
			p.t.Fatalf("waiting for %s: the daemon exited %d", what, p.code)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s: still %d %+v after %s", what, code, h, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig and returns the exit code and how long the exit took.
func (p *daemonProc) stop(sig os.Signal, timeout time.Duration) (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.code, time.Since(start)
	case <-time.After(timeout):
		p.t.Fatalf("the daemon did not exit %s after %v", timeout, sig)
		return 0, 0
	}
}

// TestDaemonEndToEnd runs the binary as a daemon on a schedule every two
// seconds against a real PostgreSQL and the S3 server: it waits for
// backups, reads /healthz and /metrics, stops the database and sees 503,
// brings it back and sees 200, then stops the daemon. A second daemon,
// throttled so its backup is still running, is sent SIGTERM mid-backup:
// it exits 0 after PGBACKUPS_SHUTDOWN_GRACE and nothing partial is listed
// or left in the bucket.
func TestDaemonEndToEnd(t *testing.T) {
	pg := testenv.NewCluster(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 20000)
	s3 := testenv.S3(t)
	env := append(s3.Env(),
		"PGBACKUPS_DATABASE_URL="+pg.URL(db),
		"PGBACKUPS_SCHEDULE=*/2 * * * * *",
		"PGBACKUPS_RETRY_MAX=0",
		"PGBACKUPS_LOG_FORMAT=json",
		"PGBACKUPS_GLOBALS=false",
	)
	p := startDaemon(t, env)

	// Two backups: after the second, retention (7 daily, 4 weekly, all on
	// one day) keeps only the newest.
	_, h := p.waitHealth("two successes and retention", 20*time.Second, func(code int, h daemon.Health) bool {
		if code != 200 || h.LastSuccess == nil {
			return false
		}
		m := p.metrics()
		return m[`pgbackups_backups_total{result="success"}`] >= 2 && m["pgbackups_retention_deleted_total"] >= 1
	})
	if h.Status != daemon.StatusOK || h.Schedule != "*/2 * * * * *" || h.TimeZone != "UTC" || h.NextRun == nil || h.LastSuccess.By != "this daemon" {
		t.Errorf("/healthz = %+v", h)
	}
	if next, err := time.Parse(time.RFC3339, *h.NextRun); err != nil || next.Unix()%2 != 0 || time.Until(next) > 3*time.Second {
		t.Errorf("next_run %q is not the next even second", *h.NextRun)
	}
	m := p.metrics()
	for _, name := range []string{"pgbackups_last_success_timestamp_seconds", "pgbackups_last_duration_seconds", "pgbackups_last_dump_bytes",
		"pgbackups_last_stored_bytes", "pgbackups_retention_deleted_total", "go_goroutines"} {
		if m[name] <= 0 {
			t.Errorf("metric %s = %v, want > 0", name, m[name])
		}
	}
	if _, ok := m["pgbackups_current_backup_bytes"]; !ok {
		t.Error("no pgbackups_current_backup_bytes")
	}
	if ms := listJSON(t, env); len(ms) != 1 {
		t.Errorf("%d completed backups listed, want 1 after retention", len(ms))
	}

	// The database goes away: the next tick fails, /healthz says 503.
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	_, h = p.waitHealth("503 after the database stopped", 10*time.Second, func(code int, h daemon.Health) bool { return code == 503 })
	if h.Status != daemon.StatusFailing || h.LastFailure == nil || !strings.Contains(h.LastFailure.Error, "(taking the backup lock)") {
		t.Errorf("/healthz = %+v", h.LastFailure)
	}
	if p.metrics()[`pgbackups_backups_total{result="failure"}`] < 1 {
		t.Error("failure not counted")
	}
	// It comes back: the next tick succeeds.
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitHealth("200 after the database came back", 15*time.Second, func(code int, h daemon.Health) bool { return code == 200 })

	code, took := p.stop(syscall.SIGTERM, 40*time.Second)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	t.Logf("idle daemon stopped in %s; dump %v bytes, stored %v, took %vs", took, m["pgbackups_last_dump_bytes"], m["pgbackups_last_stored_bytes"], m["pgbackups_last_duration_seconds"])
	logs := p.logs.String()
	for _, want := range []string{`"msg":"backup completed"`, `"rate_bytes_per_second"`, `"msg":"retention removed"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if strings.Contains(logs, pg.Password) || strings.Contains(logs, s3.SecretKey) {
		t.Error("a secret is in the daemon's log")
	}

	t.Run("SIGTERM mid-backup", func(t *testing.T) {
		before := listJSON(t, env)
		// 256 KiB/s: the dump takes several seconds, far more than the grace.
		slow := append(env[:len(env):len(env)], "PGBACKUPS_MAX_RATE=256KiB", "PGBACKUPS_SHUTDOWN_GRACE=1s", "PGBACKUPS_SCHEDULE=* * * * * *")
		p := startDaemon(t, slow)
		_, h := p.waitHealth("a backup under way", 20*time.Second, func(code int, h daemon.Health) bool {
			return h.Running != nil && h.Running.Bytes > 0
		})
		// A restarted daemon knows the last success from storage.
		if h.LastSuccess == nil || h.LastSuccess.ID != before[0].ID || h.LastSuccess.By != "storage" {
			t.Errorf("last_success after a restart = %+v, want %s from storage", h.LastSuccess, before[0].ID)
		}
		if m := p.metrics(); m["pgbackups_backup_in_progress"] != 1 || m["pgbackups_current_backup_bytes"] <= 0 || m["pgbackups_rate_limit_bytes_per_second"] != 256<<10 {
			t.Errorf("mid-backup metrics: in progress %v, bytes %v, rate limit %v", m["pgbackups_backup_in_progress"], m["pgbackups_current_backup_bytes"], m["pgbackups_rate_limit_bytes_per_second"])
		}
		code, took := p.stop(syscall.SIGTERM, 30*time.Second)
		if code != 0 {
			t.Errorf("exit %d after SIGTERM mid-backup, want 0", code)
		}
		if took < time.Second {
			t.Errorf("exited %s after SIGTERM: it did not give the backup PGBACKUPS_SHUTDOWN_GRACE=1s", took)
		}
		t.Logf("SIGTERM mid-backup (%d bytes in): exit %d after %s", h.Running.Bytes, code, took)
		if !strings.Contains(p.logs.String(), "aborting it") {
			t.Errorf("the log does not say the backup was aborted")
		}
		after := listJSON(t, env)
		if len(after) != len(before) || (len(after) > 0 && after[0].ID != before[0].ID) {
			t.Errorf("completed backups changed: %d before, %d after", len(before), len(after))
		}
		assertNothingPartial(t, s3)
	})

	t.Run("second signal", func(t *testing.T) {
		before := listJSON(t, env)
		slow := append(env[:len(env):len(env)], "PGBACKUPS_MAX_RATE=256KiB", "PGBACKUPS_SCHEDULE=* * * * * *")
		p := startDaemon(t, slow)
		p.waitHealth("a backup under way", 20*time.Second, func(code int, h daemon.Health) bool {
			return h.Running != nil && h.Running.Bytes > 0
		})
		p.cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		code, took := p.stop(syscall.SIGTERM, 10*time.Second)
		if code != exitFailure || took > time.Second {
			t.Errorf("second signal: exit %d after %s, want 1 at once", code, took)
		}
		if after := listJSON(t, env); len(after) != len(before) {
			t.Errorf("completed backups: %d before, %d after", len(before), len(after))
		}
		// The upload was not aborted (the process is gone), but it was never
		// completed either: no data object without a manifest.
		assertNoUnlistedData(t, s3)
	})
}

// assertNothingPartial checks the bucket: every backup's data object has
// a completed manifest, and no multipart upload is left open.
func assertNothingPartial(t *testing.T, s3 testenv.S3Server) {
	t.Helper()
	assertNoUnlistedData(t, s3)
	ups, err := s3.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(s3.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		t.Errorf("multipart upload left open: %s", aws.ToString(u.Key))
	}
}

// assertNoUnlistedData checks that every data object in the bucket has a
// manifest.
func assertNoUnlistedData(t *testing.T, s3 testenv.S3Server) {
	t.Helper()
	out, err := s3.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String(s3.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, o := range out.Contents {
		keys[strings.TrimPrefix(aws.ToString(o.Key), s3.Prefix+"/")] = true
	}
	for k := range keys {
		if id, _, _ := strings.Cut(k, "/"); k == storage.DataKey(id) && !keys[storage.ManifestKey(id)] {
			t.Errorf("data object %s has no manifest", k)
		}
	}
}

// TestDaemonTwoReplicas runs two daemons on one database and one bucket:
// each tick, one backs up and the other skips.
func TestDaemonTwoReplicas(t *testing.T) {
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	s3 := testenv.S3(t)
	env := append(s3.Env(),
		"PGBACKUPS_DATABASE_URL="+pg.URL(db),
		"PGBACKUPS_SCHEDULE=*/2 * * * * *",
		"PGBACKUPS_KEEP_LAST=100", // keep every backup, to count them
		"PGBACKUPS_RETRY_MAX=0",
		"PGBACKUPS_LOG_FORMAT=json",
		"PGBACKUPS_GLOBALS=false",
		"PGBACKUPS_HEALTH_GRACE=1s",
	)
	a, b := startDaemon(t, env), startDaemon(t, env)
	for _, p := range []*daemonProc{a, b} {
		p.waitHealth("HTTP", 10*time.Second, func(code int, _ daemon.Health) bool { return code != 0 })
	}
	total := func(result string) float64 {
		return a.metrics()[`pgbackups_backups_total{result="`+result+`"}`] + b.metrics()[`pgbackups_backups_total{result="`+result+`"}`]
	}
	deadline := time.Now().Add(30 * time.Second)
	for total("success") < 3 || total("skipped") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %v successes, %v skipped", total("success"), total("skipped"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range []*daemonProc{a, b} {
		if code, _ := p.stop(syscall.SIGTERM, 40*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
	// Count from the logs: the daemons are gone, and with them /metrics.
	count := func(msg string) int {
		return strings.Count(a.logs.String(), `"msg":"`+msg+`"`) + strings.Count(b.logs.String(), `"msg":"`+msg+`"`)
	}
	if n := count("backup failed"); n != 0 {
		t.Errorf("%d failures", n)
	}
	ms := listJSON(t, env)
	if succ := count("backup completed"); len(ms) != succ {
		t.Errorf("%d backups listed, %d logged as completed", len(ms), succ)
	}
	// One backup per tick: no two started in the same two-second slot.
	slots := map[int64]string{}
	for _, m := range ms {
		slot := m.StartedAt.Unix() / 2
		if other, dup := slots[slot]; dup {
			t.Errorf("backups %s and %s ran in the same tick", other, m.ID)
		}
		slots[slot] = m.ID
	}
	for _, p := range []*daemonProc{a, b} {
		logs := p.logs.String()
		if strings.Contains(logs, `"msg":"backup skipped"`) && !strings.Contains(logs, "another pgbackups holds the lock (server backend pid ") {
			t.Errorf("a skip is logged without the holder's pid")
		}
	}
	t.Logf("%d backups, %d skipped runs", len(ms), count("backup skipped"))
}
