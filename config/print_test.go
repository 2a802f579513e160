package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestConfigPrintsNoSecrets: nothing prints the config today, but a log
// line or an error that one day does (%v, %+v, %#v, slog) must not carry
// the database password, the S3 secret or the webhook token.
func TestConfigPrintsNoSecrets(t *testing.T) {
	yes := true
	c := Config{
		DatabaseURL:       "postgres://app:db-s3cret@db/app",
		S3SecretAccessKey: "s3-s3cret",
		WebhookURL:        "https://hooks.example.com/T0/hook-s3cret",
		Schedule:          "02:00 UTC",
		S3PathStyle:       &yes,
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", &c), logs.String()} {
		for _, secret := range []string{"db-s3cret", "s3-s3cret", "hook-s3cret"} {
			if strings.Contains(out, secret) {
				t.Errorf("printed config shows %q: %s", secret, out)
			}
		}
		if !strings.Contains(out, "02:00 UTC") || strings.Contains(out, "0x") {
			t.Errorf("printed config lost what is not secret, or shows an address for a value: %s", out)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"list", "list", 0}, {"lsit", "list", 1}, {"restor", "restore", 1},
		{"SCHEDUEL", "SCHEDULE", 1}, {"abc", "", 3}, {"ab", "ba", 1}, {"kitten", "sitting", 3},
	} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
