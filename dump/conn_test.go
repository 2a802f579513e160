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
	} {
		if got := dsnWithout(tc.in, "password"); got != tc.want {
			t.Errorf("dsnWithout(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestForChildKeepsPasswordOutOfArgv(t *testing.T) {
	t.Setenv("PGBACKUPS_DATABASE_URL", "postgres://app:pw@h/db")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	for _, raw := range []string{
		"postgres://app:p%3Aw%5Cd@db.example:5433/app?sslmode=require&password=other",
		"host=db.example port=5433 user=app password='p:w\\\\d' dbname=app sslmode=require",
	} {
		c, err := ParseConn(raw)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := c.forChild(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer ca.cleanup()
		if strings.Contains(ca.dbname, "p:w") || strings.Contains(ca.dbname, "other") || strings.Contains(ca.dbname, "password") {
			t.Errorf("%s: --dbname keeps a password: %s", raw, ca.dbname)
		}
		if !strings.Contains(ca.dbname, "sslmode=require") || !strings.Contains(ca.dbname, "5433") {
			t.Errorf("%s: --dbname lost connection settings: %s", raw, ca.dbname)
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
			t.Fatalf("%s: passfile: %v", raw, err)
		}
		st, _ := os.Stat(passfile)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("passfile mode %v", st.Mode().Perm())
		}
		if want := "*:*:*:*:" + `p\:w\\d` + "\n"; string(b) != want && !strings.Contains(raw, "other") {
			t.Errorf("passfile = %q, want %q", b, want)
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
