package config

import (
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
}

func TestLoadReportsEveryBadVariable(t *testing.T) {
	t.Setenv("PGBACKUPS_STORAGE_URL", "ftp://x")
	t.Setenv("PGBACKUPS_S3_CONCURRENCY", "zero")
	t.Setenv("PGBACKUPS_KEEP_WEEKLY", "-2")
	t.Setenv("PGBACKUPS_IONICE_CLASS", "realtime")
	t.Setenv("PGBACKUPS_SCHEDUEL", "02:00")
	_, err := Load()
	if err == nil {
		t.Fatal("Load accepted a bad environment")
	}
	for _, want := range []string{"PGBACKUPS_STORAGE_URL", "PGBACKUPS_S3_CONCURRENCY", "PGBACKUPS_KEEP_WEEKLY", "PGBACKUPS_IONICE_CLASS", "PGBACKUPS_SCHEDUEL: unknown variable; did you mean PGBACKUPS_SCHEDULE?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
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
