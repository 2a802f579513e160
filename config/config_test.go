package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"64MiB": 64 << 20, "64mib": 64 << 20, "20GB": 20e9, "1.5GiB": 3 << 29, "1024": 1024,
		"5 MiB": 5 << 20, "16Mi": 16 << 20, "1TiB": 1 << 40, "512B": 512,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1MiB", "lots", "12XB", "NaN", "1e400"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestRateAndDuration(t *testing.T) {
	var r Rate
	if err := r.Decode("40MiB"); err != nil || r.BytesPerSecond != 40<<20 || r.Auto {
		t.Errorf("40MiB -> %+v %v", r, err)
	}
	if err := r.Decode("auto"); err != nil || !r.Auto {
		t.Errorf("auto -> %+v %v", r, err)
	}
	if err := r.Decode("1KiB"); err == nil {
		t.Error("a rate below the floor was accepted")
	}
	var d Duration
	if err := d.Decode("45"); err != nil || d.D() != 45*time.Second {
		t.Errorf("45 -> %v %v", d, err)
	}
	if err := d.Decode("-1m"); err == nil {
		t.Error("negative duration accepted")
	}
	// Plain seconds past time.Duration's range once wrapped around to a
	// fraction of a second.
	if err := d.Decode("18446744074"); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("Decode(18446744074 seconds) = %v (%v), want too long", err, time.Duration(d))
	}
	if err := d.Decode("9223372036"); err != nil || time.Duration(d) != 9223372036*time.Second {
		t.Errorf("Decode(9223372036) = %v, %v", err, time.Duration(d))
	}
}

func TestLoadReportsEveryBadVariable(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", "ftp://x")
	t.Setenv("PGBACKUPS_S3_CONCURRENCY", "zero")
	t.Setenv("PGBACKUPS_KEEP_WEEKLY", "-2")
	t.Setenv("PGBACKUPS_IONICE_CLASS", "realtime")
	t.Setenv("PGBACKUPS_BACKEND_NICE", "20")
	t.Setenv("PGBACKUPS_SCHEDUEL", "02:00")
	t.Setenv("PGBACKUPS_DATABASE_URL", "postgres://app:hunter2@db:notaport/app")
	t.Setenv("PGBACKUPS_DUMP_URL", "host=replica password=hunter2 port=abc")
	t.Setenv("PGBACKUPS_ORPHAN_GRACE", "30m")
	t.Setenv("PGBACKUPS_RETRY_BACKOFF", "0")
	t.Setenv("PGBACKUPS_RETRY_MAX_TIME", "0s")
	t.Setenv("PGBACKUPS_STALL_TIMEOUT", "30s")
	t.Setenv("PGBACKUPS_KEEP_DAILY", "seven")
	t.Setenv("PGBACKUPS_GLOBALS", "nope")
	t.Setenv("PGBACKUPS_S3_PATH_STYLE", "yes")
	t.Setenv("PGBACKUPS_S3_ENDPOINT", "http://127.0.0.1:9000")
	t.Setenv("PGBACKUP_STORAGE_URL", "s3://my-bucket/prod")
	// Not ours: a Kubernetes Service named pgbackup's link variables.
	t.Setenv("PGBACKUP_SERVICE_HOST", "10.0.0.7")
	_, err := Load()
	if err == nil {
		t.Fatal("Load accepted a bad environment")
	}
	for _, want := range []string{
		"PGBACKUPS_STORAGE_URL", "PGBACKUPS_S3_CONCURRENCY", "PGBACKUPS_KEEP_WEEKLY", "PGBACKUPS_IONICE_CLASS",
		"PGBACKUPS_BACKEND_NICE: 20 is outside 0-19",
		"PGBACKUPS_SCHEDUEL: unknown variable; did you mean PGBACKUPS_SCHEDULE?",
		"PGBACKUPS_DATABASE_URL: does not parse", "PGBACKUPS_DUMP_URL: does not parse",
		"PGBACKUPS_ORPHAN_GRACE: 30m0s is under 1h", "PGBACKUPS_RETRY_BACKOFF: must be positive", "PGBACKUPS_RETRY_MAX_TIME: must be positive",
		"PGBACKUPS_STALL_TIMEOUT: 30s is under 1m", `PGBACKUPS_KEEP_DAILY: "seven" is not a whole number`,
		`PGBACKUPS_GLOBALS: "nope" is not true or false`, `PGBACKUPS_S3_PATH_STYLE: "yes" is not true or false`, "PGBACKUPS_S3_ENDPOINT: unknown variable; the AWS SDK's own AWS_ENDPOINT_URL_S3 sets that",
		"PGBACKUP_STORAGE_URL: unknown variable: pgbackups reads PGBACKUPS_STORAGE_URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "PGBACKUP_SERVICE_HOST") {
		t.Errorf("error names another tool's variable:\n%v", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "notaport/app") {
		t.Errorf("error repeats a database URL:\n%v", err)
	}
}

func TestLoadRejectsBadStorageURLs(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"s3://My_Bucket/prefix", "may hold only lowercase letters"},
		{"s3://ab/prefix", "3 to 63 characters"},
		{"s3:///prefix", "bucket name is empty"},
		{"file:backups", "use file:///absolute/path, or a plain path"},
		{"file:", "use file:///absolute/path, or a plain path"},
		{"file://backups/x", `names host "backups"`},
	} {
		t.Setenv("PGBACKUPS_STORAGE_URL", tc.url)
		_, err := Load()
		if err == nil || !strings.Contains(err.Error(), "PGBACKUPS_STORAGE_URL: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want PGBACKUPS_STORAGE_URL %s", tc.url, err, tc.want)
		}
	}
	for _, ok := range []string{"s3://my-bucket.example/some/prefix", "file:///var/backups", "file://localhost/var/backups", "backups", "/var/backups"} {
		t.Setenv("PGBACKUPS_STORAGE_URL", ok)
		if _, err := Load(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestLoadReadsOnlyPrefixedVariables: envconfig falls back to a tag's bare
// name (HTTP_ADDR for PGBACKUPS_HTTP_ADDR) when the prefixed variable is
// unset; variables meant for other programs must not configure pgbackups.
// DATABASE_URL is the one documented fallback.
func TestLoadReadsOnlyPrefixedVariables(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	for name, v := range map[string]string{
		"HTTP_ADDR": ":9999", "LOG_LEVEL": "INFO", "SCHEDULE": "whenever", "KEEP_DAILY": "many",
		"WEBHOOK_URL": "http://127.0.0.1:1/other-app", "STORAGE_URL": "ftp://elsewhere", "MAX_RATE": "fast",
	} {
		t.Setenv(name, v)
	}
	c, err := Load()
	if err != nil {
		t.Fatalf("Load read variables without the PGBACKUPS_ prefix: %v", err)
	}
	if c.HTTPAddr != ":8080" || c.LogLevel != "info" || c.Schedule != "" || c.KeepDaily != 7 || c.WebhookURL != "" || !c.MaxRate.Auto {
		t.Errorf("unprefixed variables were used: %+v", c)
	}
}

// TestLoadHidesSecretsInParseErrors: fragments of a password or S3
// credentials that a parser would quote stay out of the error.
func TestLoadHidesSecretsInParseErrors(t *testing.T) {
	t.Setenv("PGBACKUPS_DATABASE_URL", "host=db password=first secondhalf dbname=app")
	t.Setenv("PGBACKUPS_STORAGE_URL", "s3://AKIAEXAMPLEKEY:wJalrSecretValue@my-bucket/backups")
	_, err := Load()
	if err == nil {
		t.Fatal("Load accepted both")
	}
	for _, want := range []string{"PGBACKUPS_DATABASE_URL: does not parse", `missing "=" after <redacted>`, "PGBACKUPS_STORAGE_URL: ", "credentials do not belong in the URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, secret := range []string{"secondhalf", "first", "AKIAEXAMPLEKEY", "wJalrSecretValue"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows %q:\n%v", secret, err)
		}
	}
}

func TestLoadNamesTheDatabaseURLFallback(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	t.Setenv("DATABASE_URL", "postgres://app:hunter2@db:notaport/app")
	_, err := Load()
	if err == nil || !strings.HasPrefix(err.Error(), "DATABASE_URL: does not parse") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load = %v, want DATABASE_URL named without its password", err)
	}
}

// An error names the variable the user set: the empty PGBACKUPS_DATABASE_URL
// a compose file's unset substitution leaves falls back to DATABASE_URL, and
// a secret read from NAME_FILE is NAME_FILE's. A URL parser's quoted token
// may be part of a password and is not shown.
func TestLoadNamesTheVariableSet(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte("ftp://hooks.example/T0KEN\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGBACKUPS_STORAGE_URL", dir)
	t.Setenv("PGBACKUPS_DATABASE_URL", "")
	t.Setenv("DATABASE_URL", "postgres://app@db%zz9/app")
	t.Setenv("PGBACKUPS_WEBHOOK_URL_FILE", hook)
	_, err := Load()
	if err == nil {
		t.Fatal("Load accepted a bad DATABASE_URL and webhook URL")
	}
	msg := "\n" + err.Error()
	for _, want := range []string{"\nDATABASE_URL: does not parse", "\nPGBACKUPS_WEBHOOK_URL_FILE: is not an http(s) URL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"%zz9", "T0KEN"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error shows %q:\n%s", secret, msg)
		}
	}
}

func TestValidateRejectsNegativeHealthGrace(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	c.HealthGrace = Duration(-time.Minute)
	if errs := c.Validate(); len(errs) != 1 || errs[0].Var != "PGBACKUPS_HEALTH_GRACE" {
		t.Errorf("Validate = %v, want PGBACKUPS_HEALTH_GRACE", errs)
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.S3PartSize != 8<<20 || c.CompressionLevel != 1 || c.KeepDaily != 7 || c.KeepWeekly != 4 || !c.Globals || c.HTTPAddr != ":8080" || c.Nice != 10 || c.LockWaitTimeout.D() != 30*time.Second || c.S3PathStyle != nil {
		t.Errorf("defaults: %+v", c)
	}
}

// TestLoadIgnoresServiceLinks: a Kubernetes Service named pgbackups (the
// obvious name for scraping the daemon) puts link variables with our
// prefix in every container of its namespace; they are not settings, and
// the daemon starts.
func TestLoadIgnoresServiceLinks(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	for _, v := range []string{"PGBACKUPS_SERVICE_HOST", "PGBACKUPS_SERVICE_PORT", "PGBACKUPS_SERVICE_PORT_HTTP", "PGBACKUPS_PORT",
		"PGBACKUPS_PORT_8080_TCP", "PGBACKUPS_PORT_8080_TCP_PROTO", "PGBACKUPS_PORT_8080_TCP_PORT", "PGBACKUPS_PORT_8080_TCP_ADDR"} {
		t.Setenv(v, "10.0.0.7")
	}
	if _, err := Load(); err != nil {
		t.Errorf("Load with a Service's link variables: %v", err)
	}
	t.Setenv("PGBACKUPS_SERVICE_HOSTS", "x") // not a link variable
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "PGBACKUPS_SERVICE_HOSTS: unknown variable") {
		t.Errorf("Load with PGBACKUPS_SERVICE_HOSTS: %v, want it unknown", err)
	}
}
