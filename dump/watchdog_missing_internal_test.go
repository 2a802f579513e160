package dump

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbackups/pgbackups/internal/testenv"
)

// TestWatchdogMissingBackend: a dump backend the watchdog cannot find is
// reported once, with the likely reason: an application_name of the
// user's hiding it when it was never seen, the backend ending when it was.
func TestWatchdogMissingBackend(t *testing.T) {
	pg := testenv.PG(t)
	// watch runs the watchdog on db until the warning comes; once ready
	// returns true (before the warning), then runs.
	watch := func(t *testing.T, db, id string, ready func() bool, then func()) string {
		t.Helper()
		conn, err := ParseConn(pg.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		var lines logLines
		w := &Watchdog{Interval: 50 * time.Millisecond, Logger: lines.logger(), missingGrace: 500 * time.Millisecond}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- w.Watch(ctx, Running{ID: id, AppName: AppName(id), Conn: conn}) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("watchdog: %v", err)
			}
		}()
		deadline := time.Now().Add(30 * time.Second)
		for ; ready != nil && !ready(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the watchdog never looked at the database")
			}
		}
		if then != nil {
			then()
		}
		for ; len(lines.with("not in pg_stat_activity")) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no warning 30 s later; logged:\n%s", strings.Join(lines.all(), "\n"))
			}
		}
		time.Sleep(300 * time.Millisecond) // a few more looks: still one warning
		got := lines.with("not in pg_stat_activity")
		if len(got) != 1 {
			t.Errorf("%d warnings, want one:\n%s", len(got), strings.Join(got, "\n"))
		}
		return got[0]
	}

	t.Run("never seen", func(t *testing.T) {
		got := watch(t, pg.CreateDB(t), "never", nil, nil)
		if !strings.Contains(got, "an application_name in the database URL overrides") {
			t.Errorf("warning %s; want it to name the application_name override", got)
		}
	})

	t.Run("ended", func(t *testing.T) {
		db := pg.CreateDB(t)
		cfg, err := pgx.ParseConfig(pg.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = AppName("ended")
		c, err := pgx.ConnectConfig(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var pid int
		if err := c.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		// The watchdog has finished a look at the database (so seen the
		// backend) once its own session is idle after its query: matched
		// by how it starts, as a pattern in this probe would match the
		// probe's own sessions.
		looked := func() bool {
			n := pg.QueryString(t, db, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'idle' AND application_name = 'pgbackups'
				  AND starts_with(query, '`+watchdogQuery[:strings.Index(watchdogQuery, "\n")]+`')`)
			return n != "0"
		}
		got := watch(t, db, "ended", looked, func() {
			pg.Exec(t, db, "SELECT pg_terminate_backend("+strconv.Itoa(pid)+")")
		})
		if !strings.Contains(got, "it ended since it was seen") {
			t.Errorf("warning %s; want it to say the backend ended", got)
		}
	})
}

// logLines keeps what a logger writes, one line each.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *logLines) with(s string) []string {
	var out []string
	for _, line := range l.all() {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}
