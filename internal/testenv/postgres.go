// Package testenv starts the real servers integration tests need: a
// throwaway PostgreSQL cluster (initdb into a temp dir, a free port) and an
// S3-compatible server (VersityGW), both on 127.0.0.1 and both torn down
// when the test binary ends. When CI=true a missing server binary fails the
// test; elsewhere it skips with instructions.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running throwaway cluster. The superuser connects over TCP
// with a password (scram-sha-256), so tests exercise the same password
// handling a real deployment does.
type Postgres struct {
	BinDir   string // the server's bin directory (pg_dump etc. live here too)
	DataDir  string
	Host     string // 127.0.0.1
	Port     int
	User     string // superuser
	Password string
	Major    int

	dir     string // temp root: data/, sockets, log
	cred    *syscall.Credential
	running bool
}

// The superuser's password. Tests assert it never shows in logs or argv.
const testPassword = "pg-s3cret-Pa55word"

var (
	sharedPGMu sync.Mutex
	sharedPG   *Postgres
	allPG      []*Postgres
)

// PG returns the cluster shared by the tests of this binary, starting it on
// first use. Tests isolate themselves with CreateDB.
func PG(t testing.TB) *Postgres {
	t.Helper()
	sharedPGMu.Lock()
	defer sharedPGMu.Unlock()
	if sharedPG != nil && sharedPG.running {
		return sharedPG
	}
	p, err := startCluster(t, nil)
	if err != nil {
		t.Fatalf("testenv: start PostgreSQL: %v", err)
	}
	sharedPG = p
	return p
}

// NewCluster starts a cluster of the test's own, for tests that stop the
// server or change its settings. It is stopped when the test ends. extra are
// postgresql.conf lines.
func NewCluster(t testing.TB, extra ...string) *Postgres {
	t.Helper()
	sharedPGMu.Lock()
	p, err := startCluster(t, extra)
	sharedPGMu.Unlock()
	if err != nil {
		t.Fatalf("testenv: start PostgreSQL: %v", err)
	}
	t.Cleanup(p.Destroy)
	return p
}

// CleanupPostgres stops every cluster this binary started. Call it from
// TestMain after m.Run (Cleanup does).
func CleanupPostgres() {
	sharedPGMu.Lock()
	defer sharedPGMu.Unlock()
	for _, p := range allPG {
		p.Destroy()
	}
	allPG, sharedPG = nil, nil
}

// BinDir finds the newest PostgreSQL server installation.
func BinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PGBACKUPS_TEST_PG_BIN_DIR"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return majorOf(matches[i]) > majorOf(matches[j]) })
	if len(matches) == 0 {
		missing(t, "PostgreSQL server binaries (initdb) not found under /usr/lib/postgresql/*/bin; run `sudo apt-get install -y postgresql postgresql-contrib` (the README's test command does)")
	}
	return filepath.Dir(matches[0])
}

func majorOf(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// missing fails under CI (where tests must run) and skips elsewhere.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("testenv: " + msg)
	}
	t.Skip("testenv: " + msg)
}

// socketParent is where directories that hold a Unix socket are made: the
// temp dir, unless its path leaves too little of the 107 bytes a socket's
// path may have (a CI runner's TMPDIR can be deep), then /tmp.
func socketParent() string {
	if d := os.TempDir(); len(d) <= 48 {
		return d
	}
	return "/tmp"
}

// SocketDir is a temporary directory, removed after t, short enough to
// hold a Unix socket whatever TMPDIR is.
func SocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(socketParent(), "pgbackups-sock-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startCluster(t testing.TB, extra []string) (*Postgres, error) {
	bin := BinDir(t)
	dir, err := os.MkdirTemp(socketParent(), "pgbackups-pg-*")
	if err != nil {
		return nil, err
	}
	p := &Postgres{BinDir: bin, dir: dir, DataDir: filepath.Join(dir, "data"), Host: "127.0.0.1", User: "postgres", Password: testPassword, Major: majorOf(filepath.Join(bin, "initdb"))}
	// initdb refuses to run as root: run the server as the postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		os.Chmod(dir, 0o755)
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(testPassword+"\n"), 0o644); err != nil {
		return nil, err
	}
	if p.cred != nil {
		os.Chown(pwfile, int(p.cred.Uid), int(p.cred.Gid))
	}
	if out, err := p.run("initdb", "-D", p.DataDir, "-U", p.User, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	os.Remove(pwfile)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.Port = port
	conf := append([]string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", port),
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
		"max_connections = 50", "shared_buffers = 64MB",
		"wal_level = replica", "max_wal_senders = 4",
		"log_min_messages = warning",
	}, extra...)
	if err := appendConf(p.DataDir, conf); err != nil {
		return nil, err
	}
	// Replication from 127.0.0.1 for standby tests.
	hba, err := os.OpenFile(filepath.Join(p.DataDir, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(hba, "host replication all 127.0.0.1/32 scram-sha-256")
	hba.Close()
	// The port was free a moment ago; another process (a test binary of
	// another package, running beside this one) may have taken it since.
	for attempt := 1; ; attempt++ {
		err := p.Start()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
		if p.Port, err = freePort(); err != nil {
			return nil, err
		}
		if err := appendConf(p.DataDir, []string{fmt.Sprintf("port = %d", p.Port)}); err != nil {
			return nil, err
		}
	}
	allPG = append(allPG, p)
	return p, nil
}

// run runs a server program as the cluster's owner.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.BinDir, name), args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Start starts (or restarts) the server and waits until it accepts
// connections.
func (p *Postgres) Start() error {
	if out, err := p.run("pg_ctl", "-D", p.DataDir, "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	p.running = true
	return nil
}

// Stop stops the server (fast mode: sessions are terminated).
func (p *Postgres) Stop() error {
	if !p.running {
		return nil
	}
	out, err := p.run("pg_ctl", "-D", p.DataDir, "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	p.running = false
	return nil
}

// Destroy stops the server and removes its files.
func (p *Postgres) Destroy() {
	if p.running {
		p.run("pg_ctl", "-D", p.DataDir, "-m", "immediate", "-w", "-t", "30", "stop")
		p.running = false
	}
	os.RemoveAll(p.dir)
}

// Dir is the cluster's temp root (its Unix socket lives there).
func (p *Postgres) Dir() string { return p.dir }

// URL is a postgres:// URL for db, with the password in it.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", p.User, p.Password, p.Host, p.Port, db)
}

// URLAs is a URL for db as another role.
func (p *Postgres) URLAs(role, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", role, password, p.Host, p.Port, db)
}

var dbSeq struct {
	sync.Mutex
	n int
}

// CreateDB creates a fresh, uniquely named database for the test, dropped
// when it ends, and returns its name.
func (p *Postgres) CreateDB(t testing.TB) string {
	t.Helper()
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.n)
	dbSeq.Unlock()
	p.Exec(t, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() {
		if !p.running {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, p.URL("postgres")); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return name
}

// Exec runs sql (several statements allowed) in db and fails the test on error.
func (p *Postgres) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, c, done := p.connect(t, db)
	defer done()
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("testenv: exec in %s: %v\n%s", db, err, sql)
	}
}

// QueryString runs a query returning one text value.
func (p *Postgres) QueryString(t testing.TB, db, sql string) string {
	t.Helper()
	ctx, c, done := p.connect(t, db)
	defer done()
	var s string
	if err := c.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("testenv: query in %s: %v\n%s", db, err, sql)
	}
	return s
}

// Tool is the path of a client program of this cluster's version.
func (p *Postgres) Tool(name string) string { return filepath.Join(p.BinDir, name) }

// connect opens a connection to db for one helper call; done closes it.
func (p *Postgres) connect(t testing.TB, db string) (ctx context.Context, c *pgx.Conn, done func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		cancel()
		t.Fatalf("testenv: connect %s: %v", db, err)
	}
	return ctx, c, func() { c.Close(ctx); cancel() }
}

// appendConf adds lines to a data directory's postgresql.conf; later lines
// win over earlier ones.
func appendConf(dataDir string, lines []string) error {
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, strings.Join(lines, "\n")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
