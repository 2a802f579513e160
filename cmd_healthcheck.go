package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/pgbackups/pgbackups/config"
)

// healthcheckCommand is the container's HEALTHCHECK: the image carries no
// curl, so the binary probes its own daemon. It reads PGBACKUPS_HTTP_ADDR
// and nothing else: a probe that loaded the whole configuration would read
// secret files and probe the storage directory every 30 seconds, and would
// report a configuration mistake as "unhealthy" instead of leaving that to
// the daemon, which refuses to start.
//
// By default it probes /healthz, so `docker ps` says whether backups
// succeed. --live probes /livez, for whatever replaces an unhealthy
// container (Docker Swarm, autoheal): /healthz stays 503 after a restart
// while the last success is stale, so restarting on it would loop, and
// would kill the retries of a backup that failed.
var healthcheckCommand = command{
	name:    "healthcheck",
	args:    "[--live] [--timeout 5s]",
	summary: "probe the local daemon's /healthz (or /livez with --live): exit 0 on 200, else 1",
	// Docker reserves exit status 2 and treats anything but 0 and 1 as
	// undefined; a mistyped HEALTHCHECK flag is an unhealthy container, and
	// says why in the health log.
	usageExit: exitFailure,
	exitHelp: `Exit status: 0 healthy (200), 1 anything else: unhealthy, unreachable, or a bad
flag (Docker reserves 2).
`,
	run: func(m *Main, ctx context.Context, args []string) error {
		fs := m.flags()
		live := fs.Bool("live", false, "probe /livez (is the daemon working?) instead of /healthz (are backups succeeding?)")
		timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
		if _, err := m.parseFlags(fs, args, 0); err != nil {
			return err
		}
		if *timeout <= 0 {
			return usagef("--timeout %s: want a positive duration such as 5s", *timeout)
		}
		path := "/healthz"
		if *live {
			path = "/livez"
		}
		name, addr := httpAddrFromEnv()
		u, err := probeURL(addr, path)
		if err != nil {
			// Exit 1, not 2: for Docker, 1 is "unhealthy" and 2 is reserved.
			return fmt.Errorf("%s: %w", name, err)
		}
		return probe(ctx, m.Stdout, u, *timeout)
	},
}

// httpAddrFromEnv returns PGBACKUPS_HTTP_ADDR's name and value, with the
// default from the config struct's tag when it is unset.
func httpAddrFromEnv() (name, addr string) {
	f, _ := reflect.TypeOf(config.Config{}).FieldByName("HTTPAddr")
	name = config.VarName(f)
	if v, ok := os.LookupEnv(name); ok {
		return name, v
	}
	return name, f.Tag.Get("default")
}

// healthzURL is probeURL for /healthz; TestHealthcheckURL checks the address
// handling through it.
func healthzURL(addr string) (string, error) { return probeURL(addr, "/healthz") }

// probeURL turns the daemon's listen address into the URL of path to probe
// from the same host: an unspecified host (":8080", "0.0.0.0:8080",
// "[::]:8080") becomes 127.0.0.1, which a dual-stack "[::]" listener also
// accepts.
func probeURL(addr, path string) (string, error) {
	if addr == "off" {
		return "", fmt.Errorf("is off: the daemon serves no %s to probe", path)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("%q has no fixed port to probe", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// probe GETs u and succeeds only on 200. It copies the start of the body
// to w: Docker keeps a health check's output in `docker inspect`.
func probe(ctx context.Context, w io.Writer, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{
		// No proxy from HTTP_PROXY: the daemon is on this host.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// /healthz never redirects; a redirect means something else answers.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("GET %s: no answer within %s (--timeout)", u, timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // not `Get "URL": ...`: the URL once, as below
		}
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	// All of it to read the verdict from, its first KiB printed: Docker
	// keeps 4 KiB of a health check's output, and the error line, which
	// carries the verdict, comes after it.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if s := strings.TrimSpace(string(body[:min(len(body), 1024)])); s != "" {
		fmt.Fprintln(w, s)
	}
	if resp.StatusCode != http.StatusOK {
		// The daemon's verdict in the error too, where a probe's log shows
		// only the last line: "failing: the last backup failed".
		var h struct{ Status, Reason string }
		if json.Unmarshal(body, &h) == nil && h.Status != "" {
			why := h.Status
			if h.Reason != "" {
				why += ": " + h.Reason
			}
			return fmt.Errorf("GET %s: %s: %s", u, resp.Status, why)
		}
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
