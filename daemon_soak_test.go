//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/daemon"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/storage"
	"github.com/pgbackups/pgbackups/storage/file"
	"github.com/pgbackups/pgbackups/storage/s3"
)

// soakCyclesEnv makes TestDaemonSoak run longer: the number of scheduled
// runs it drives (default soakCycles). A few hundred is a soak worth the
// name; CI runs the short one. (Not PGBACKUPS_: the daemon under test
// rejects variables of its prefix it does not know.) soakStoresEnv lists
// the stores to soak, "file" (the default) and "s3".
const soakCyclesEnv = "SOAK_CYCLES"

const soakStoresEnv = "SOAK_STORES"

// soakPeriod is the schedule's: a run every 4 seconds. The test samples
// in the quiet at least a second before a run, once the last one is over,
// so a backup (half a second here, up to 1.4 s under -race on a loaded
// 2-vCPU machine, where every 2 seconds left no such quiet and the test
// failed with "the daemon never went idle") must end well within the
// period. It divides a minute, so the gaps are even.
const soakPeriod = 4 * time.Second

const soakCycles = 16

// soakKinds is what each cycle after the warm-up does to the run, in turn:
// back up, skip it (the lock is held by another session), fail it (the
// database is down), and cut a capture short in flight three ways (its
// lock session terminated, which cancels the backup's context; pg_dump
// killed; the database restarted under it).
var soakKinds = []string{"ok", "held", "ok", "down", "ok", "lost", "ok", "killed", "ok", "restart"}

// soakSample is what a daemon that runs for months must not accumulate.
type soakSample struct {
	goroutines int
	fds        int
	threads    int
	sessions   int // pgbackups' sessions in pg_stat_activity
	children   int // pg_dump, pg_dumpall or zombie children
	tmpFiles   int // in $TMPDIR
	storeTmp   int // unfinished writes in the store
}

func (s soakSample) String() string {
	return fmt.Sprintf("goroutines %3d  fds %3d  threads %3d  pg sessions %d  children %d  $TMPDIR files %d  store temporaries %d",
		s.goroutines, s.fds, s.threads, s.sessions, s.children, s.tmpFiles, s.storeTmp)
}

// TestDaemonSoak runs the daemon in-process, wired as `pgbackups daemon`
// wires it, on a schedule every soakPeriod against a real PostgreSQL and
// a local store, for many runs, some of them skipped, failed or cancelled
// mid-dump, and checks after each that nothing piles up: goroutines, file
// descriptors, threads, database sessions, child processes, temporary
// files. A daemon runs for months; whatever one run leaves behind, a year
// of runs multiplies by 100,000.
func TestDaemonSoak(t *testing.T) {
	cycles := soakCycles
	if v := os.Getenv(soakCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < len(soakKinds) {
			t.Fatalf("%s=%q: want a number of cycles, at least %d", soakCyclesEnv, v, len(soakKinds))
		}
		cycles = n
	}
	stores := strings.Fields(os.Getenv(soakStoresEnv))
	if len(stores) == 0 {
		stores = []string{"file"}
	}
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { soak(t, store, cycles) })
	}
}

func soak(t *testing.T, store string, cycles int) {
	pg := testenv.NewCluster(t)
	db := pg.CreateDB(t)
	pg.SeedRich(t, db, 2000)
	storeDir := t.TempDir()
	storeURL := "file://" + storeDir
	var s3env []string
	if store == "s3" {
		s3 := testenv.S3(t)
		s3env = s3.Env()
		storeURL = strings.TrimPrefix(s3env[len(s3env)-1], "PGBACKUPS_STORAGE_URL=")
		s3env = s3env[:len(s3env)-1]
	}
	tmp := t.TempDir()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer hook.Close()
	port := freeTCPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for k, v := range map[string]string{
		"PGBACKUPS_DATABASE_URL": pg.URL(db),
		"PGBACKUPS_STORAGE_URL":  storeURL,
		"PGBACKUPS_SCHEDULE":     fmt.Sprintf("*/%d * * * * *", int(soakPeriod/time.Second)),
		"PGBACKUPS_HTTP_ADDR":    fmt.Sprintf("127.0.0.1:%d", port),
		"PGBACKUPS_RETRY_MAX":    "0",
		"PGBACKUPS_KEEP_LAST":    "2",
		"PGBACKUPS_KEEP_DAILY":   "0",
		"PGBACKUPS_KEEP_WEEKLY":  "0",
		"PGBACKUPS_LOG_FORMAT":   "json",
		"PGBACKUPS_WEBHOOK_URL":  hook.URL + "/hook",
		"PGBACKUPS_PING_URL":     hook.URL + "/ping",
		// The rest are the defaults, every monitor on: MAX_RATE=auto,
		// BACKEND_NICE, the watchdog, the stall watch, globals.
		"TMPDIR": tmp, // the passfiles go here, and nothing else of this test
	} {
		t.Setenv(k, v)
	}
	for _, kv := range s3env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var st storage.Store
	var err error
	if store == "s3" {
		bucket, prefix, _ := s3.ParseURL(storeURL)
		st, err = s3.New(context.Background(), s3.Options{Bucket: bucket, Prefix: prefix})
	} else {
		st, err = file.Open(storeDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	lockKey := daemon.LockKey(storageLocation(st, storeURL), db)

	// One connection per look, closed after it: the database is stopped
	// and started under the test.
	query := func(sql string, args ...any) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, pg.URL("postgres")+"&application_name=soak")
		if err != nil {
			return 0, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		var n int
		err = c.QueryRow(ctx, sql, args...).Scan(&n)
		return n, err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	counts := func() (ok, failed, skipped int) {
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			return -1, -1, -1
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, v, _ := strings.Cut(sc.Text(), " ")
			n, _ := strconv.ParseFloat(v, 64)
			switch name {
			case `pgbackups_backups_total{result="success"}`:
				ok = int(n)
			case `pgbackups_backups_total{result="failure"}`:
				failed = int(n)
			case `pgbackups_backups_total{result="skipped"}`:
				skipped = int(n)
			}
		}
		return ok, failed, skipped
	}
	sample := func() soakSample {
		var s soakSample
		s.sessions, err = query(`SELECT count(*)::int FROM pg_stat_activity WHERE application_name LIKE 'pgbackups%'`)
		if err != nil {
			s.sessions = -1
		}
		s.children = len(soakChildren(func(comm, state string) bool {
			return comm == "pg_dump" || comm == "pg_dumpall" || state == "Z"
		}))
		s.tmpFiles = countFiles(tmp, func(string) bool { return true })
		s.storeTmp = countFiles(storeDir, func(name string) bool { return strings.HasPrefix(name, ".tmp-") })
		s.fds = countFiles("/proc/self/fd", func(string) bool { return true })
		s.threads = procThreads()
		// Goroutines that end a run (the scheduler's, gocron's
		// bookkeeping, a webhook in flight) take a moment: the least of
		// a few looks.
		s.goroutines = runtime.NumGoroutine()
		for range 5 {
			time.Sleep(40 * time.Millisecond)
			s.goroutines = min(s.goroutines, runtime.NumGoroutine())
		}
		return s
	}

	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	m := &Main{Stdout: io.Discard, Stderr: &logs}
	done, stopped := make(chan int, 1), make(chan struct{})
	go func() {
		code := m.Run(ctx, []string{"daemon"})
		m.Close()
		done <- code
		close(stopped)
	}()
	// However the test ends, the daemon is gone before its environment
	// and temp dirs are.
	defer func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(60 * time.Second):
			t.Error("the daemon did not stop within 60s of the test's end")
		}
	}()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", tail(logs.String(), 60))
		}
	}()
	// alive fails the test once the daemon has exited.
	alive := func() {
		select {
		case code := <-done:
			t.Fatalf("the daemon exited %d:\n%s", code, tail(logs.String(), 30))
		default:
		}
	}

	// idle waits for a moment at least lead before a scheduled run when no
	// run is under way (no session, no pg_dump, nothing in progress), and
	// returns that run's time.
	idle := func(lead time.Duration) time.Time {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			alive()
			next := time.Now().Truncate(soakPeriod).Add(soakPeriod)
			if time.Until(next) < lead {
				time.Sleep(time.Until(next) + 100*time.Millisecond)
				continue
			}
			n, err := query(`SELECT count(*)::int FROM pg_stat_activity WHERE application_name LIKE 'pgbackups%'`)
			if err == nil && n == 0 && len(soakChildren(func(comm, _ string) bool { return comm == "pg_dump" || comm == "pg_dumpall" })) == 0 {
				return next
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("the daemon never went idle between runs")
		return time.Time{}
	}
	// ran waits for the run after the counts were o, f, s to end.
	ran := func(what string, o, f, s int) (int, int, int) {
		deadline := time.Now().Add(40 * time.Second)
		for time.Now().Before(deadline) {
			alive()
			no, nf, ns := counts()
			if no+nf+ns > o+f+s {
				return no, nf, ns
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: no run ended within 40s", what)
		return 0, 0, 0
	}
	// waitFor polls cond until it holds.
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var samples []soakSample
	var baseline soakSample
	var baseStacks []byte
	const warmup = 3 // first runs load code, fill pools and caches
	for i := range cycles + warmup {
		kind := "ok"
		if i >= warmup {
			kind = soakKinds[(i-warmup)%len(soakKinds)]
		}
		// Measure in the quiet before the next run: what the last one
		// left behind.
		idle(time.Second)
		s := sample()
		samples = append(samples, s)
		if i == warmup {
			baseline = s
			baseStacks = goroutineStacks()
		}
		t.Logf("after run %2d: %s", i, s)
		next := idle(700 * time.Millisecond)
		o, f, sk := counts()
		var release func()
		switch kind {
		case "held":
			// Another pgbackups holds the lock: the run is skipped.
			c, err := pgx.Connect(context.Background(), pg.URL(db)+"&application_name=soak-holder")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
				t.Fatal(err)
			}
			release = func() { c.Close(context.Background()) }
		case "down":
			// The database is unreachable at the run.
			if err := pg.Stop(); err != nil {
				t.Fatal(err)
			}
			release = func() {
				if err := pg.Start(); err != nil {
					t.Fatal(err)
				}
			}
		case "lost", "killed", "restart":
			// pg_dump waits for a table lock this session holds, so the
			// capture is surely mid-way when it is cut short.
			c, err := pgx.Connect(context.Background(), pg.URL(db)+"&application_name=soak-blocker")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(context.Background(), `BEGIN; LOCK TABLE billing.invoices IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			release = func() { c.Close(context.Background()) }
		}
		time.Sleep(time.Until(next))
		switch kind {
		case "lost", "killed", "restart":
			waitFor("pg_dump waiting for the table lock", func() bool {
				n, err := query(`SELECT count(*)::int FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-dump-%' AND wait_event_type = 'Lock'`)
				return err == nil && n == 1
			})
			if kind == "lost" {
				// The backup lock's session ends: the daemon cancels
				// the backup (ErrLockLost).
				n, err := query(`SELECT count(pg_terminate_backend(a.pid))::int FROM pg_locks l JOIN pg_stat_activity a USING (pid)
					WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'pgbackups@%'`)
				if err != nil || n != 1 {
					t.Fatalf("terminate the lock session: %d, %v", n, err)
				}
			} else if kind == "restart" {
				if err := pg.Stop(); err != nil {
					t.Fatal(err)
				}
				r := release
				release = func() {
					r()
					if err := pg.Start(); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				pids := soakChildren(func(comm, _ string) bool { return comm == "pg_dump" })
				if len(pids) != 1 {
					t.Fatalf("%d pg_dump children, want 1", len(pids))
				}
				syscall.Kill(pids[0], syscall.SIGKILL)
			}
		}
		_, nf, ns := ran(kind, o, f, sk)
		if release != nil {
			release()
		}
		got := "ok"
		switch {
		case nf > f:
			got = "failed"
		case ns > sk:
			got = "skipped"
		}
		want := map[string]string{"ok": "ok", "held": "skipped", "down": "failed", "lost": "failed", "killed": "failed", "restart": "failed"}[kind]
		if got != want {
			t.Errorf("run %d (%s): %s, want %s", i, kind, got, want)
		}
	}
	idle(time.Second)
	final := sample()
	samples = append(samples, final)
	t.Logf("after run %2d: %s", cycles+warmup, final)

	// A small constant slack: a pooled HTTP connection of the webhook
	// sender, a runtime thread.
	const slack = 4
	if final.goroutines > baseline.goroutines+slack {
		t.Errorf("goroutines grew from %d to %d over %d runs; new since the baseline:\n%s",
			baseline.goroutines, final.goroutines, cycles, diffStacks(baseStacks, goroutineStacks()))
	}
	if final.fds > baseline.fds+slack {
		t.Errorf("open file descriptors grew from %d to %d over %d runs:\n%s", baseline.fds, final.fds, cycles, listFDs())
	}
	if final.threads > baseline.threads+2*slack {
		t.Errorf("threads grew from %d to %d over %d runs", baseline.threads, final.threads, cycles)
	}
	if final.sessions != 0 {
		t.Errorf("%d pgbackups sessions open between runs", final.sessions)
	}
	if final.children != 0 {
		t.Errorf("%d pg_dump, pg_dumpall or zombie children left between runs", final.children)
	}
	if final.tmpFiles != baseline.tmpFiles {
		t.Errorf("$TMPDIR holds %d files, %d at the baseline: %v", final.tmpFiles, baseline.tmpFiles, dirNames(tmp))
	}
	if final.storeTmp != 0 {
		t.Errorf("%d temporary files left in the store", final.storeTmp)
	}
	// The trend, not only the end: the most goroutines at any quiet
	// moment in the second half against the first.
	half := len(samples) / 2
	maxOf := func(ss []soakSample) (g, f int) {
		for _, s := range ss {
			g, f = max(g, s.goroutines), max(f, s.fds)
		}
		return g, f
	}
	g1, f1 := maxOf(samples[warmup:half])
	g2, f2 := maxOf(samples[half:])
	t.Logf("most goroutines at a quiet moment: %d in the first half, %d in the second; fds %d, %d", g1, g2, f1, f2)

	// And Run gives back what it took.
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("daemon exit %d", code)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the daemon did not stop within 40s")
	}
	client.CloseIdleConnections()
	var after int
	waitUntil := time.Now().Add(5 * time.Second)
	for after = runtime.NumGoroutine(); after > before+slack && time.Now().Before(waitUntil); after = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("goroutines: %d before the daemon started, %d after it stopped", before, after)
	if after > before+slack {
		t.Errorf("the stopped daemon left %d goroutines (%d before it started):\n%s", after-before, before, goroutineDump())
	}
}

// soakChildren returns the pids of this process's children that match.
func soakChildren(match func(comm, state string) bool) []int {
	self := os.Getpid()
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self && match(string(b[open+1:end]), f[0]) {
			out = append(out, pid)
		}
	}
	return out
}

// countFiles counts the files under dir whose names match.
func countFiles(dir string, match func(name string) bool) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir && !d.IsDir() && match(d.Name()) {
			n++
		}
		return nil
	})
	return n
}

func dirNames(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// procThreads is the process's thread count.
func procThreads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// listFDs names what each open descriptor points at.
func listFDs() string {
	es, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range es {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

func goroutineDump() string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

// goroutineStacks is the goroutine profile, goroutines grouped by stack.
func goroutineStacks() []byte {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.Bytes()
}

// diffStacks lists the stacks that have more goroutines in after than in
// before, with how many more.
func diffStacks(before, after []byte) string {
	parse := func(p []byte) map[string]int {
		out := map[string]int{}
		for _, block := range strings.Split(string(p), "\n\n") {
			head, stack, ok := strings.Cut(block, "\n")
			if !ok {
				continue
			}
			var n int
			if _, err := fmt.Sscanf(head, "%d @", &n); err != nil {
				continue
			}
			// Frames without their addresses, so one stack matches
			// across profiles.
			var frames []string
			for _, l := range strings.Split(stack, "\n") {
				if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" {
					frames = append(frames, f[2])
				}
			}
			out[strings.Join(frames, "\n    ")] += n
		}
		return out
	}
	b, a := parse(before), parse(after)
	var lines []string
	for stack, n := range a {
		if n > b[stack] {
			lines = append(lines, fmt.Sprintf("+%d:\n    %s", n-b[stack], stack))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
