package main

import (
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnitServesHealthOnLoopback: under systemd pgbackups runs on a
// host whose other interfaces may face a network; /metrics names the
// database and its sizes. The unit defaults PGBACKUPS_HTTP_ADDR to
// loopback (the env file may still override it); it used to inherit the
// binary's container default, every interface.
func TestSystemdUnitServesHealthOnLoopback(t *testing.T) {
	svc := parseSystemdUnit(t, "systemd/pgbackups.service")["Service"]
	addr := ""
	for _, kv := range svc["Environment"] {
		if v, ok := strings.CutPrefix(kv, "PGBACKUPS_HTTP_ADDR="); ok {
			addr = v
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("unit Environment PGBACKUPS_HTTP_ADDR=%q, want a loopback address", addr)
	}
}

// TestDockerStateDirectoryPrivate: the image's state directory (the local
// backend's default, copied into a new named volume with its mode) is
// 0700, like the store's own folders: it used to be 0750.
func TestDockerStateDirectoryPrivate(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`install -d [^\n]*-m (\d+) /var/lib/pgbackups`).FindSubmatch(b)
	if m == nil || string(m[1]) != "0700" {
		t.Fatalf("Dockerfile creates /var/lib/pgbackups with mode %q, want 0700", m)
	}
}
