package dump_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgbackups/pgbackups/dump"
	"github.com/pgbackups/pgbackups/internal/testenv"
)

// startNice is the niceness this test binary was started at: 0 usually,
// more where CI runs its jobs under nice. Threads and children the tests
// do not lower keep it.
var startNice = func() int {
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		panic(err)
	}
	return 20 - raw
}()

// lowerableTo skips a test that lowers to nice n when the binary already
// runs at n or lower priority: Priority never raises one.
func lowerableTo(t *testing.T, n int) {
	t.Helper()
	if startNice >= n {
		t.Skipf("the test binary already runs at nice %d; this test lowers to %d", startNice, n)
	}
}

// niceOf and ioprioOf read a thread's priorities the way ps and ionice do.
func niceOf(t *testing.T, tid int) int {
	t.Helper()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatal(err)
	}
	return 20 - raw
}

func ioprioOf(t *testing.T, tid int) (class, level int) {
	t.Helper()
	r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, 1, uintptr(tid), 0)
	if e != 0 {
		t.Fatal(e)
	}
	return int(r) >> 13, int(r) & 7
}

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestPriorityApply(t *testing.T) {
	lowerableTo(t, 12)
	t.Run("lowers", func(t *testing.T) {
		pid := sleeper(t).Process.Pid
		if err := (dump.Priority{Nice: 12, IOClass: dump.IOClassIdle}).Apply(pid); err != nil {
			t.Fatal(err)
		}
		if n := niceOf(t, pid); n != 12 {
			t.Errorf("nice %d, want 12", n)
		}
		if c, _ := ioprioOf(t, pid); c != dump.IOClassIdle {
			t.Errorf("io class %d, want idle", c)
		}
	})
	t.Run("best-effort level", func(t *testing.T) {
		pid := sleeper(t).Process.Pid
		if err := (dump.Priority{IOClass: dump.IOClassBestEffort, IOLevel: 6}).Apply(pid); err != nil {
			t.Fatal(err)
		}
		if c, l := ioprioOf(t, pid); c != dump.IOClassBestEffort || l != 6 {
			t.Errorf("io class %d level %d, want best-effort 6", c, l)
		}
		if n := niceOf(t, pid); n != startNice {
			t.Errorf("Nice 0 changed niceness to %d (from %d)", n, startNice)
		}
	})
	t.Run("never raises", func(t *testing.T) {
		pid := sleeper(t).Process.Pid
		if err := (dump.Priority{Nice: 15, IOClass: dump.IOClassIdle}).Apply(pid); err != nil {
			t.Fatal(err)
		}
		if err := (dump.Priority{Nice: 10, IOClass: dump.IOClassBestEffort, IOLevel: 7}).Apply(pid); err != nil {
			t.Fatal(err)
		}
		if n := niceOf(t, pid); n != 15 {
			t.Errorf("nice %d, want 15 kept", n)
		}
		if c, _ := ioprioOf(t, pid); c != dump.IOClassIdle {
			t.Errorf("io class %d, want idle kept", c)
		}
	})
	t.Run("refused", func(t *testing.T) {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		err := (dump.Priority{Nice: 10, IOClass: dump.IOClassIdle}).Apply(cmd.Process.Pid) // reaped: no such process
		if err == nil || !strings.Contains(err.Error(), "setpriority") || !strings.Contains(err.Error(), "ioprio_set") {
			t.Fatalf("err = %v, want both calls refused", err)
		}
	})
}

// TestCaptureLowersPgDump checks pg_dump runs at PGBACKUPS_NICE and the IO
// class, through NoStall's Started hook, and that a refusal only warns.
func TestCaptureLowersPgDump(t *testing.T) {
	lowerableTo(t, 10)
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	pg.Exec(t, db, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	o := options(t, pg, db, fileStore(t))
	log, logs := newLog()
	dump.NewNoStall(dump.NoStallOptions{Priority: dump.Priority{Nice: 10, IOClass: dump.IOClassIdle}, Logger: log}).Apply(&o)
	lowered := o.Started
	var nice, class int
	o.Started = func(pid int, capLog *slog.Logger) {
		lowered(pid, capLog)
		nice = niceOf(t, pid)
		class, _ = ioprioOf(t, pid)
	}
	lowerCompressor := o.Compressing
	var compressor struct{ tid, nice, class int }
	o.Compressing = func(capLog *slog.Logger) {
		lowerCompressor(capLog)
		compressor.tid = unix.Gettid()
		if raw, err := unix.Getpriority(unix.PRIO_PROCESS, compressor.tid); err == nil {
			compressor.nice = 20 - raw
		}
		if r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, 1, uintptr(compressor.tid), 0); e == 0 {
			compressor.class = int(r) >> 13
		}
	}
	if _, err := dump.Capture(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if nice != 10 || class != dump.IOClassIdle {
		t.Errorf("pg_dump ran at nice %d, io class %d; want 10 and idle (%d)", nice, class, dump.IOClassIdle)
	}
	if compressor.nice != 10 || compressor.class != dump.IOClassIdle {
		t.Errorf("the compressor thread ran at nice %d, io class %d; want 10 and idle", compressor.nice, compressor.class)
	}
	// The lowered thread ends with the compressing goroutine; a thread
	// returned to the runtime's pool would lower whatever ran on it next.
	notReused(t, compressor.tid)
	if w := logs.lines("normal priority"); len(w) != 0 {
		t.Errorf("unexpected warning: %s", w)
	}

	// A process that is gone: the hook warns and goes on, through the
	// capture's logger when it has one (its lines carry the backup).
	cmd := exec.Command("true")
	cmd.Run()
	o.Started = nil
	dump.NewNoStall(dump.NoStallOptions{Priority: dump.Priority{Nice: 10}, Logger: log}).Apply(&o)
	o.Started(cmd.Process.Pid, nil)
	if w := logs.lines("pg_dump runs at normal priority"); len(w) != 1 || !strings.Contains(w[0], "setpriority") {
		t.Errorf("want one warning naming setpriority, got %q", w)
	}
	capLog, capLogs := newLog()
	o.Started(cmd.Process.Pid, capLog.With("backup", "b1"))
	if w := capLogs.lines("pg_dump runs at normal priority"); len(w) != 1 || !strings.Contains(w[0], `"backup":"b1"`) {
		t.Errorf("want the warning through the capture's logger, with its backup, got %q", w)
	}
	if w := logs.lines("pg_dump runs at normal priority"); len(w) != 1 {
		t.Errorf("the warning also went to the no-stall logger: %q", w)
	}
}

// notReused checks that the lowered thread tid does not go back to the
// runtime: goroutines locked to threads (which takes idle threads before
// new ones) all run at the process's own priority, and tid is gone,
// unless it is the main thread, which the runtime parks for good instead
// of ending it.
func notReused(t *testing.T, tid int) {
	t.Helper()
	if tid == 0 {
		t.Fatal("no thread id recorded")
	}
	const n = 16
	var wg sync.WaitGroup
	nices := make(chan [2]int, n)
	release := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			raw, _ := unix.Getpriority(unix.PRIO_PROCESS, 0)
			nices <- [2]int{unix.Gettid(), 20 - raw}
			<-release
		}()
	}
	for range n {
		if r := <-nices; r[1] != startNice {
			t.Errorf("a goroutine ran on thread %d at nice %d, want %d", r[0], r[1], startNice)
		}
	}
	close(release)
	wg.Wait()
	if tid == os.Getpid() {
		return
	}
	for range 100 {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); os.IsNotExist(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("lowered thread %d still exists", tid)
}

// TestPriorityApplyThread lowers one thread of this process: the others
// keep their priority, and the lowered one ends with its goroutine.
func TestPriorityApplyThread(t *testing.T) {
	lowerableTo(t, 12)
	type result struct {
		tid int
		err error
	}
	done := make(chan result)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		err := dump.Priority{Nice: 12, IOClass: dump.IOClassIdle}.ApplyThread()
		done <- result{unix.Gettid(), err}
		<-release
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := niceOf(t, r.tid); n != 12 {
		t.Errorf("lowered thread at nice %d, want 12", n)
	}
	if c, _ := ioprioOf(t, r.tid); c != dump.IOClassIdle {
		t.Errorf("lowered thread in io class %d, want idle", c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		if tid != r.tid && niceOf(t, tid) == 12 {
			t.Errorf("thread %d was lowered too", tid)
		}
	}
	close(release)
	notReused(t, r.tid)
}

// TestPriorityApplySelf lowers every thread of a child test process (it
// cannot be undone, so not this one) and checks threads started afterwards
// inherit it.
func TestPriorityApplySelf(t *testing.T) {
	if os.Getenv("PGBACKUPS_TEST_APPLY_SELF") == "1" {
		applySelfChild()
		return
	}
	lowerableTo(t, 11)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPriorityApplySelf$")
	cmd.Env = append(os.Environ(), "PGBACKUPS_TEST_APPLY_SELF=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all threads lowered") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func applySelfChild() {
	if err := (dump.Priority{Nice: 11, IOClass: dump.IOClassIdle}).ApplySelf(); err != nil {
		fmt.Println("ApplySelf:", err)
		os.Exit(1)
	}
	// Start more OS threads after the fact.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			<-release
		}()
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		r, _, _ := unix.Syscall(unix.SYS_IOPRIO_GET, 1, uintptr(tid), 0)
		if err == nil && (20-raw != 11 || int(r)>>13 != dump.IOClassIdle) {
			fmt.Printf("thread %d: nice %d, io class %d\n", tid, 20-raw, int(r)>>13)
			os.Exit(1)
		}
	}
	close(release)
	wg.Wait()
	fmt.Printf("all threads lowered (%d)\n", len(tasks))
	os.Exit(0)
}
