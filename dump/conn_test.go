package dump

import (
	"os"
	"path/filepath"
	"slices"
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
		// pgx drops the spaces around a key (and a value): these are the
		// password to it, and must not reach argv as another parameter.
		{"postgres://app@db.example:5433/app?sslmode=require&password =other", "other"},
		{"postgres://app@db.example:5433/app?sslmode=require& password=other", "other"},
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

func TestConnValue(t *testing.T) {
	for _, tc := range []struct {
		raw, key, want string
		found          bool
	}{
		{"postgres://u@h/db?sslpassword=a%20b%2Bc&sslmode=require", "sslpassword", "a b+c", true},
		{"postgres://u@h/db?ssl%70assword=x&sslpassword=y", "sslpassword", "y", true}, // last wins
		{"postgres://u@h/db?sslmode=require", "sslpassword", "", false},
		{"postgres://u@h/db", "sslpassword", "", false},
		// A '?' in the userinfo's password does not start the query.
		{"postgres://u:pa?ss@h/db?sslpassword=x", "sslpassword", "x", true},
		{"postgres://u:a?sslpassword=evil@h/db", "sslpassword", "", false},
		{`host=h sslpassword='it\'s a \\ key' dbname=d`, "sslpassword", `it's a \ key`, true},
		{`host=h sslpassword=ab\ cd`, "sslpassword", "ab cd", true},
		{"host=h service=prod", "service", "prod", true},
		{"host=h dbname=d", "sslpassword", "", false},
	} {
		got, found := connValue(tc.raw, tc.key)
		if got != tc.want || found != tc.found {
			t.Errorf("connValue(%q, %q) = %q, %v; want %q, %v", tc.raw, tc.key, got, found, tc.want, tc.found)
		}
	}
}

func TestForChildSSLPassword(t *testing.T) {
	t.Setenv("PGSERVICE", "")
	t.Setenv("PGSERVICEFILE", "/etc/somewhere")
	c, err := ParseConn(`host=db.example user=app password=pw sslpassword='key pass\'phrase' sslmode=disable dbname=app`)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := c.forChild(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ca.dbname, "phrase") || strings.Contains(ca.dbname, "pw") {
		t.Errorf("dbname keeps a secret: %q", ca.dbname)
	}
	if ca.dbname != "host=db.example user=app sslmode=disable dbname=app" {
		t.Errorf("dbname = %q", ca.dbname)
	}
	var service string
	for _, kv := range ca.env {
		switch {
		case kv == "PGSERVICEFILE=/etc/somewhere":
			t.Error("the user's PGSERVICEFILE was kept alongside ours")
		case strings.HasPrefix(kv, "PGSERVICEFILE="):
			b, err := os.ReadFile(strings.TrimPrefix(kv, "PGSERVICEFILE="))
			if err != nil {
				t.Fatal(err)
			}
			service = string(b)
		}
	}
	if want := "[pgbackups]\nsslpassword=key pass'phrase\n"; service != want {
		t.Errorf("service file %q, want %q", service, want)
	}
	if !slices.Contains(ca.env, "PGSERVICE=pgbackups") {
		t.Error("PGSERVICE not set")
	}
	ca.cleanup()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("cleanup left %d files", len(ents))
	}

	svc := filepath.Join(t.TempDir(), "pg_service.conf")
	if err := os.WriteFile(svc, []byte("[prod]\nport=5433\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSERVICEFILE", svc)
	for _, tc := range []struct{ raw, secret string }{
		{"host=h sslpassword=xyzzy service=prod", "xyzzy"},
		{"host=h sslpassword=xyzzy servicefile=/etc/x", "xyzzy"},      // a service of the user's
		{"host=h sslpassword='trailing space ' dbname=d", "trailing"}, // a service file trims it
		{"postgres://u@h/d?sslpassword=zq%0Awv&x=1", "zq"},            // nor can it hold a newline
	} {
		c, err := ParseConn(tc.raw)
		if err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		dir := t.TempDir()
		if _, err := c.forChild(dir); err == nil || strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%q: err = %v, want a refusal that does not quote the secret", tc.raw, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%q: a refused forChild left %d files", tc.raw, len(ents))
		}
	}
}

// TestServerDatabase: a URL without a database name connects to the
// user's, as libpq does; the backup lock is keyed on it, so both spellings
// of one database must give the same name.
func TestServerDatabase(t *testing.T) {
	t.Setenv("PGDATABASE", "")
	for _, tc := range []struct{ url, want string }{
		{"postgres://app@db/app", "app"},
		{"postgres://app@db", "app"},
		{"postgres://app@db:5432/", "app"},
		{"host=db user=app", "app"},
		{"postgres://app@db/billing", "billing"},
	} {
		c, err := ParseConn(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ServerDatabase(); got != tc.want {
			t.Errorf("%s: ServerDatabase() = %q, want %q", tc.url, got, tc.want)
		}
	}
}
