package dump

import (
	"os"
	"strings"
	"testing"
)

func TestDSNWithout(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host=db user=app password=secret dbname=app", "host=db user=app dbname=app"},
		{`password='it\'s \\ here' host=db`, "host=db"},
		{"host = db  password = s3cr3t sslmode=require", "host=db sslmode=require"},
		{"dbname=x", "dbname=x"},
		// A backslash escapes the next character in a bare value too.
		{`password=ab\ cd host=db`, "host=db"},
		{`host=db password=a\ b\ c\'d dbname=app`, "host=db dbname=app"},
		{`host=my\ db password=x`, `host=my\ db`},
		{`host=db password=ends\`, "host=db"},
		{"host=db\vpassword=x\fdbname=app", "host=db dbname=app"},
	} {
		if got := dsnWithout(tc.in, "password"); got != tc.want {
			t.Errorf("dsnWithout(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestForChildKeepsPasswordOutOfArgv(t *testing.T) {
	t.Setenv("PGBACKUPS_DATABASE_URL", "postgres://app:pw@h/db")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	for _, tc := range []struct {
		raw      string
		password string // what pgx (and libpq) read: the passfile must hold it
	}{
		// Both a userinfo and a query password: the query's wins, in pgx
		// and libpq alike (settings are stored in order, last one kept).
		{"postgres://app:p%3Aw%5Cd@db.example:5433/app?sslmode=require&password=other", "other"},
		{"postgres://app:p%3Aw%5Cd@db.example:5433/app?sslmode=require&pass%77ord=other", "other"},
		{"postgres://app:p%3Aw%5Cd@db.example:5433/app?sslmode=require", `p:w\d`},
		// libpq ends userinfo at the first '@' before any '/', even past a
		// '?': the user is "h?application_name=app". net/url saw a query
		// and re-encoded the password into it.
		{"postgres://h?application_name=app:hunter2@db.example:5433/app?sslmode=require", "hunter2"},
		{"host=db.example port=5433 user=app password='p:w\\\\d' dbname=app sslmode=require", `p:w\d`},
		{`host=db.example port=5433 user=app password=ab\ hunter2 dbname=app sslmode=require`, "ab hunter2"},
	} {
		c, err := ParseConn(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Config().Password; got != tc.password {
			t.Fatalf("%s: pgx reads password %q, want %q", tc.raw, got, tc.password)
		}
		ca, err := c.forChild(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer ca.cleanup()
		if strings.Contains(ca.dbname, "p:w") || strings.Contains(ca.dbname, "p%3Aw") || strings.Contains(ca.dbname, "other") ||
			strings.Contains(ca.dbname, "hunter2") || strings.Contains(ca.dbname, "password") {
			t.Errorf("%s: --dbname keeps a password: %s", tc.raw, ca.dbname)
		}
		if !strings.Contains(ca.dbname, "sslmode=require") || !strings.Contains(ca.dbname, "5433") {
			t.Errorf("%s: --dbname lost connection settings: %s", tc.raw, ca.dbname)
		}
		// What the child will parse is the database pgx connects to.
		cc, err := ParseConn(ca.dbname)
		if err != nil {
			t.Fatalf("%s: --dbname %s does not parse: %v", tc.raw, ca.dbname, err)
		}
		if a, b := c.Config(), cc.Config(); a.Host != b.Host || a.Port != b.Port || a.User != b.User || a.Database != b.Database {
			t.Errorf("%s: --dbname %s is %s, want %s", tc.raw, ca.dbname, cc, c)
		}
		var passfile string
		for _, kv := range ca.env {
			if strings.HasPrefix(kv, "PGBACKUPS_") || strings.Contains(kv, "aws-secret") {
				t.Errorf("child env carries %s", kv)
			}
			if v, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
				passfile = v
			}
		}
		b, err := os.ReadFile(passfile)
		if err != nil {
			t.Fatalf("%s: passfile: %v", tc.raw, err)
		}
		st, _ := os.Stat(passfile)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("passfile mode %v", st.Mode().Perm())
		}
		if want := "*:*:*:*:" + pgpassEscape(tc.password) + "\n"; string(b) != want {
			t.Errorf("%s: passfile = %q, want %q", tc.raw, b, want)
		}
	}
}

func TestConnStringHidesPassword(t *testing.T) {
	c, err := ParseConn("postgres://app:hunter2@db:6543/shop")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, `"shop"`) || !strings.Contains(s, "db:6543") {
		t.Errorf("String() = %s", s)
	}
	if _, err := ParseConn("postgres://app:hunter2@db:notaport/shop"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("parse error leaks or is missing: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(32)
	for i := 0; i < 100; i++ {
		b.Write([]byte("line of noise\n"))
	}
	b.Write([]byte("pg_dump: error: the cause\n"))
	if s := b.String(); !strings.HasSuffix(s, "the cause") || len(s) > 40 {
		t.Errorf("tail = %q", s)
	}
}
