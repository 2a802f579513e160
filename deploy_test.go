package main

// Tests of how pgbackups is shipped (issue 6): the Dockerfile, the systemd
// unit and its env example, the Kubernetes examples, the Makefile, the
// README's configuration reference and the healthcheck command. No
// container engine runs here, so the Dockerfile is parsed and its build
// stage's `go build` is run for real; systemd-analyze checks the unit when
// it is installed (always under CI=true).

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgbackups/pgbackups/config"
	"github.com/pgbackups/pgbackups/internal/testenv"
	"github.com/pgbackups/pgbackups/schedule"
)

// inCI reports whether optional tools must be present (scripts/test.sh
// installs them and sets CI=true).
func inCI() bool { return os.Getenv("CI") == "true" }

// configDefault is the default tag of the Config field read from
// PGBACKUPS_<name>.
func configDefault(t *testing.T, name string) string {
	t.Helper()
	for _, f := range config.Fields() {
		if f.Tag.Get("envconfig") == name {
			return f.Tag.Get("default")
		}
	}
	t.Fatalf("config has no variable %s_%s", config.Prefix, name)
	return ""
}

func defaultShutdownGrace(t *testing.T) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(configDefault(t, "SHUTDOWN_GRACE"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// defaultHTTPPort is the port of PGBACKUPS_HTTP_ADDR's default (":8080").
func defaultHTTPPort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(configDefault(t, "HTTP_ADDR"))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// configVars returns every variable pgbackups reads, and which of them are
// secrets (readable from NAME_FILE).
func configVars() (known, secret map[string]bool) {
	known, secret = map[string]bool{}, map[string]bool{}
	for _, f := range config.Fields() {
		name := config.VarName(f)
		known[name] = true
		if f.Tag.Get("secret") == "true" {
			secret[name] = true
			known[name+"_FILE"] = true
		}
	}
	return known, secret
}

func hasCommand(name string) bool {
	for _, c := range commands() {
		if c.name == name {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- Dockerfile

type dockerInstr struct {
	cmd  string // upper case: RUN, COPY, ...
	args string // continuation lines joined, comments dropped
	line int
}

type dockerStage struct {
	from, name string // name is the AS alias
	instrs     []dockerInstr
}

// dockerfile is a parsed Dockerfile: the ARGs before the first FROM and the
// stages in order.
type dockerfile struct {
	globalArgs map[string]string
	stages     []dockerStage
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var instrs []dockerInstr
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments are dropped even inside a continuation
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		instrs = append(instrs, dockerInstr{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends in a line continuation", path)
	}
	d := dockerfile{globalArgs: map[string]string{}}
	for _, in := range instrs {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			d.stages = append(d.stages, st)
		case len(d.stages) == 0:
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
			}
			k, v, _ := strings.Cut(in.args, "=")
			d.globalArgs[k] = strings.Trim(v, `"`)
		default:
			st := &d.stages[len(d.stages)-1]
			st.instrs = append(st.instrs, in)
		}
	}
	return d
}

func (s dockerStage) all(cmd string) []dockerInstr {
	var out []dockerInstr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last is the stage's last cmd instruction (the one that takes effect).
func (s dockerStage) last(t *testing.T, cmd string) string {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("stage %q has no %s", s.from, cmd)
	}
	return all[len(all)-1].args
}

// args is the stage's ARG defaults.
func (s dockerStage) args() map[string]string {
	m := map[string]string{}
	for _, in := range s.all("ARG") {
		k, v, _ := strings.Cut(in.args, "=")
		m[k] = strings.Trim(v, `"`)
	}
	return m
}

func (d dockerfile) stage(t *testing.T, name string) dockerStage {
	t.Helper()
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return dockerStage{}
}

// shellWords splits a command line the way sh does for the simple commands
// a Dockerfile RUN uses here: blanks separate words, quotes group them.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", c, s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			w.WriteByte(s[i+1])
			i++
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// goBuildCommand is the build stage's `go build`, as env assignments and the
// go command's arguments, with its variables not yet expanded.
func goBuildCommand(t *testing.T, build dockerStage) (env, args []string) {
	t.Helper()
	var run string
	for _, in := range build.all("RUN") {
		if strings.Contains(in.args, "go build") {
			if run != "" {
				t.Fatal("the build stage has two RUNs with go build")
			}
			run = in.args
		}
	}
	if run == "" {
		t.Fatal("the build stage has no RUN with go build")
	}
	words, err := shellWords(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range words {
		if slices.Contains([]string{"&&", "||", ";", "|"}, w) {
			t.Fatalf("the go build RUN must be one command, for deploy_test.go to replay it: %s", run)
		}
	}
	for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN --mount=...
		words = words[1:]
	}
	assign := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	for len(words) > 0 && assign.MatchString(words[0]) {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("the build RUN is not [VAR=value ...] go build ...: %s", run)
	}
	return env, words[1:]
}

func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestDockerfileEssentials(t *testing.T) {
	d := parseDockerfile(t, "Dockerfile")
	if len(d.stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(d.stages))
	}
	expand := func(s string) string { return os.Expand(s, func(k string) string { return d.globalArgs[k] }) }

	// Build stage: the Go of go.mod, static, stamped.
	build := d.stage(t, "build")
	from := expand(build.from)
	goVersion := regexp.MustCompile(`^golang:(\d+\.\d+)(\.\d+)?-`).FindStringSubmatch(from)
	if goVersion == nil {
		t.Fatalf("build stage FROM %s, want golang:<version>-<debian>", from)
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goLine == nil || string(goLine[1]) != goVersion[1] {
		t.Errorf("build stage uses Go %s, go.mod says %s", goVersion[1], goLine[1])
	}
	env, args := goBuildCommand(t, build)
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("go build env %v lacks CGO_ENABLED=0 (a static binary)", env)
	}
	if !slices.Contains(args, "-trimpath") {
		t.Errorf("go build %v lacks -trimpath", args)
	}
	ldflags, _ := flagValue(args, "-ldflags")
	for _, want := range []string{"-s", "-w", "-X main.version=${VERSION}", "-X main.commit=${COMMIT}"} {
		if !strings.Contains(" "+ldflags+" ", " "+want+" ") {
			t.Errorf("go build -ldflags %q lacks %q", ldflags, want)
		}
	}
	for _, arg := range []string{"VERSION", "COMMIT"} {
		if _, ok := build.args()[arg]; !ok {
			t.Errorf("build stage has no ARG %s", arg)
		}
	}
	out, _ := flagValue(args, "-o")

	// Runtime stage.
	rt := d.stages[len(d.stages)-1]
	if rt.name == "build" || !strings.HasPrefix(expand(rt.from), "debian:") || !strings.HasSuffix(expand(rt.from), "-slim") {
		t.Errorf("runtime stage FROM %s, want debian:<release>-slim", rt.from)
	}
	copied := false
	for _, c := range rt.all("COPY") {
		if strings.Contains(c.args, "--from=build") && strings.Contains(c.args, out+" ") {
			copied = true
		}
	}
	if !copied {
		t.Errorf("runtime stage does not COPY --from=build %s", out)
	}
	user := rt.last(t, "USER")
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %s: want a non-root user", user)
	} else if _, err := strconv.Atoi(uid); err != nil {
		t.Errorf("USER %s: want a numeric uid, so Kubernetes' runAsNonRoot can verify it", user)
	}
	checks := map[string]string{
		"HEALTHCHECK": `CMD ["pgbackups", "healthcheck"]`,
		"STOPSIGNAL":  "SIGTERM",
		"ENTRYPOINT":  `["pgbackups"]`,
		"CMD":         `["daemon"]`,
		"VOLUME":      `["/var/lib/pgbackups"]`,
		"EXPOSE":      defaultHTTPPort(t),
	}
	for cmd, want := range checks {
		if got := rt.last(t, cmd); !strings.Contains(got, want) {
			t.Errorf("%s %s, want %s", cmd, got, want)
		}
	}
	if !hasCommand("healthcheck") {
		t.Error("HEALTHCHECK runs `pgbackups healthcheck`, which is not a command")
	}
	labels := ""
	for _, l := range rt.all("LABEL") {
		labels += " " + l.args
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if !strings.Contains(labels, "org.opencontainers.image."+l+"=") {
			t.Errorf("runtime stage has no org.opencontainers.image.%s label", l)
		}
	}

	// Packages: PGDG's clients for several majors, zstd, CA certificates;
	// hadolint's rules on apt.
	runs := ""
	for _, s := range d.stages {
		for _, r := range s.all("RUN") {
			runs += r.args + "\n"
			if strings.Contains(r.args, "apt-get install") {
				if strings.Count(r.args, "apt-get install") != strings.Count(r.args, "apt-get install -y --no-install-recommends") {
					t.Errorf("line %d: apt-get install without -y --no-install-recommends", r.line)
				}
			}
			if strings.Contains(r.args, "apt-get update") && !strings.Contains(r.args, "rm -rf /var/lib/apt/lists/*") {
				t.Errorf("line %d: apt-get update without removing /var/lib/apt/lists", r.line)
			}
		}
	}
	for _, want := range []string{"apt.postgresql.org", "postgresql-client-", "zstd", "ca-certificates"} {
		if !strings.Contains(runs, want) {
			t.Errorf("no RUN mentions %s", want)
		}
	}
	if shell := rt.last(t, "SHELL"); !strings.Contains(shell, `"pipefail"`) {
		t.Errorf("SHELL %s: pipes in RUN need -o pipefail", shell)
	}
	rtArgs := rt.args()
	majors := strings.Fields(rtArgs["PG_MAJORS"])
	if n, _ := strconv.Atoi(rtArgs["PG_CLIENTS"]); len(majors) < 3 && (len(majors) != 0 || n < 3) {
		t.Errorf("PG_MAJORS=%q PG_CLIENTS=%q: want clients of several (3+) majors by default", rtArgs["PG_MAJORS"], rtArgs["PG_CLIENTS"])
	}
}

// TestDockerfileBuildStageVersion replays the build stage's go build (same
// environment and flags, output into a temp dir) and checks what it makes:
// a static, stripped binary whose `version` prints the stamped values.
func TestDockerfileBuildStageVersion(t *testing.T) {
	d := parseDockerfile(t, "Dockerfile")
	build := d.stage(t, "build")
	env, args := goBuildCommand(t, build)
	vars := build.args()
	vars["VERSION"], vars["COMMIT"] = "v9.8.7-deploytest", "0123abc"
	vars["TARGETOS"], vars["TARGETARCH"] = runtime.GOOS, runtime.GOARCH
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := vars[k]
			if !ok {
				t.Fatalf("build RUN uses $%s, which no ARG of the build stage sets", k)
			}
			return v
		})
	}
	for i := range env {
		env[i] = expand(env[i])
	}
	for i := range args {
		args[i] = expand(args[i])
	}
	bin := filepath.Join(t.TempDir(), "pgbackups")
	for i, a := range args {
		if a == "-o" {
			args[i+1] = bin
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), env...)
	shown := slices.Clone(args)
	for i, a := range shown {
		if strings.Contains(a, " ") {
			shown[i] = strconv.Quote(a)
		}
	}
	t.Logf("%s go %s", strings.Join(env, " "), strings.Join(shown, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build: %v\n%s", err, out)
	}

	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbackups version: %v\n%s", err, out)
	}
	want := fmt.Sprintf("pgbackups v9.8.7-deploytest (commit 0123abc, %s)\n", runtime.Version())
	if string(out) != want {
		t.Errorf("pgbackups version printed %q, want %q", out, want)
	}
	for _, flag := range []string{"--version", "-v"} {
		if out, _ := exec.CommandContext(ctx, bin, flag).CombinedOutput(); string(out) != want {
			t.Errorf("pgbackups %s printed %q, want %q", flag, out, want)
		}
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: not static (CGO_ENABLED=0?)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s did not apply")
	}
}

// TestDockerignoreKeepsSources checks .dockerignore leaves every file of the
// build in the context, and .git out of it.
func TestDockerignoreKeepsSources(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are beyond this test's matcher", l)
		}
		patterns = append(patterns, strings.TrimPrefix(filepath.Clean(l), "/"))
	}
	// Docker matches each pattern against the path and, since excluding a
	// directory excludes its contents, against every parent directory.
	ignored := func(rel string) bool {
		for p := rel; p != "."; p = filepath.Dir(p) {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, p); ok {
					return true
				}
			}
		}
		return false
	}
	if !ignored(".git") {
		t.Error(".dockerignore does not exclude .git: the build would stamp VCS data and bust caches")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := os.Getwd()
	files := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, f[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range f[1:] {
			files = append(files, filepath.Join(dir, name))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		if ignored(f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
}

// ---------------------------------------------------------------- Makefile

func TestDeployMakefile(t *testing.T) {
	b, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	recipe := func(target string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:[^\n]*\n((?:\t[^\n]*\n)*)`).FindStringSubmatch(mk)
		if m == nil {
			t.Errorf("Makefile has no %s target", target)
			return ""
		}
		return m[1]
	}
	for target, want := range map[string]string{
		"build":         `CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)"`,
		"test":          "./scripts/test.sh",
		"bench":         "./bench/run.sh",
		"lint":          "go vet ./...",
		"readme-config": "go run . help config",
	} {
		if r := recipe(target); r != "" && !strings.Contains(r, want) {
			t.Errorf("make %s does not run %s:\n%s", target, want, r)
		}
	}
	if !strings.Contains(recipe("lint"), "gofmt -l") {
		t.Error("make lint does not run gofmt -l")
	}
	// The Makefile's ldflags are the Dockerfile's.
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.*)$`).FindStringSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile sets no LDFLAGS")
	}
	mkFlags := regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllString(strings.TrimSpace(m[1]), "$${$1}")
	_, args := goBuildCommand(t, parseDockerfile(t, "Dockerfile").stage(t, "build"))
	if dockerFlags, _ := flagValue(args, "-ldflags"); mkFlags != dockerFlags {
		t.Errorf("Makefile LDFLAGS %q differ from the Dockerfile's %q", mkFlags, dockerFlags)
	}
}

// ---------------------------------------------------------------- README

const (
	readmeStart = "<!-- config-reference:start -->"
	readmeEnd   = "<!-- config-reference:end -->"
)

// TestReadmeConfigReference fails when README.md's configuration table is
// not `pgbackups help config`, which is generated from the config struct.
func TestReadmeConfigReference(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, rest, ok1 := strings.Cut(readme, readmeStart+"\n")
	block, _, ok2 := strings.Cut(rest, readmeEnd)
	if !ok1 || !ok2 {
		t.Fatalf("README.md lacks the lines %s and %s around the configuration table; add them and run `make readme-config`", readmeStart, readmeEnd)
	}
	var want bytes.Buffer
	writeConfigReference(&want)
	if strings.TrimSpace(block) != strings.TrimSpace(want.String()) {
		t.Errorf("README.md's configuration table differs from `pgbackups help config`; run `make readme-config`.\nREADME:\n%s\nwant:\n%s", block, want.String())
	}
}

// ---------------------------------------------------------------- systemd

// systemdUnit is a unit file: section -> key -> values in order (a key may
// repeat, and an empty assignment resets in systemd; both are kept).
type systemdUnit map[string]map[string][]string

func parseSystemdUnit(t *testing.T, path string) systemdUnit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := systemdUnit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case section == "":
			t.Fatalf("%s:%d: outside a section", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: not key=value: %s", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func TestSystemdUnitEssentials(t *testing.T) {
	u := parseSystemdUnit(t, "systemd/pgbackups.service")
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"EnvironmentFile":         "/etc/pgbackups/env",
		"Restart":                 "on-failure",
		"KillMode":                "mixed", // SIGTERM to pgbackups only: pg_dump may finish
		"DynamicUser":             "yes",
		"StateDirectory":          "pgbackups",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures": "native",
		"CapabilityBoundingSet":   "",
	}
	for k, v := range want {
		got, ok := svc[k]
		if !ok || got[len(got)-1] != v {
			t.Errorf("%s=%v, want %s=%s", k, got, k, v)
		}
	}
	if got := svc["SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%v, want @system-service first", got)
	}
	for _, f := range svc["SystemCallFilter"] {
		// PGBACKUPS_NICE and PGBACKUPS_IONICE_CLASS need setpriority and
		// ioprio_set, which @resources holds.
		if strings.Contains(f, "@resources") {
			t.Errorf("SystemCallFilter=%s denies what lowering pg_dump's priority needs", f)
		}
	}
	// pgbackups lowers pg_dump and its compressor itself; a unit-wide
	// priority would slow /healthz and the upload too, and PGBACKUPS_NICE=0
	// could not undo it without CAP_SYS_NICE.
	for _, k := range []string{"Nice", "IOSchedulingClass", "IOSchedulingPriority", "CPUSchedulingPolicy"} {
		if v, ok := svc[k]; ok {
			t.Errorf("%s=%v: the unit must leave priority to PGBACKUPS_NICE and PGBACKUPS_IONICE_CLASS", k, v)
		}
	}
	if len(svc["MemoryMax"]) == 0 {
		t.Error("no MemoryMax")
	}
	if exec := svc["ExecStart"]; len(exec) != 1 || !strings.HasSuffix(exec[0], "/pgbackups daemon") || !filepath.IsAbs(strings.Fields(exec[0])[0]) {
		t.Errorf("ExecStart=%v, want /absolute/path/pgbackups daemon", exec)
	}
	stop, err := time.ParseDuration(strings.Join(svc["TimeoutStopSec"], ""))
	if grace := defaultShutdownGrace(t); err != nil || stop < grace+70*time.Second {
		t.Errorf("TimeoutStopSec=%v must leave PGBACKUPS_SHUTDOWN_GRACE's default %s plus 70 s of cleanup against a hung storage", svc["TimeoutStopSec"], grace)
	}
	// Type=notify hangs `systemctl start` unless someone sends READY=1.
	if _, err := os.Stat("internal/sdnotify/sdnotify.go"); err != nil {
		t.Errorf("Type=notify without internal/sdnotify: %v", err)
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("no [Install] WantedBy")
	}
}

// envFileLines returns the example's assignments and the variable names it
// mentions in comments.
func envFileLines(t *testing.T, path string) (set [][2]string, mentioned []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	for _, l := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		mentioned = append(mentioned, m[1])
		if !strings.HasPrefix(l, "#") {
			set = append(set, [2]string{m[1], m[2]})
		}
	}
	return set, mentioned
}

func TestSystemdEnvExample(t *testing.T) {
	set, mentioned := envFileLines(t, "systemd/pgbackups.env.example")
	known, _ := configVars()
	for _, name := range mentioned {
		if strings.HasPrefix(name, config.Prefix+"_") && !known[name] {
			t.Errorf("the env example names %s, which pgbackups does not read", name)
		}
	}
	for _, name := range []string{"PGBACKUPS_DATABASE_URL", "PGBACKUPS_STORAGE_URL", "PGBACKUPS_SCHEDULE", "PGBACKUPS_KEEP_DAILY", "PGBACKUPS_HTTP_ADDR", "PGBACKUPS_SHUTDOWN_GRACE"} {
		if !slices.Contains(mentioned, name) {
			t.Errorf("the env example does not mention %s", name)
		}
	}
	// What it sets is a valid configuration as it stands.
	for _, kv := range set {
		t.Setenv(kv[0], kv[1])
		if kv[0] == "PGBACKUPS_SCHEDULE" {
			if _, err := schedule.Parse(kv[1]); err != nil {
				t.Errorf("PGBACKUPS_SCHEDULE=%s: %v", kv[1], err)
			}
		}
	}
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir()) // not /var/lib/pgbackups of this machine
	if _, err := config.Load(); err != nil {
		t.Errorf("the env example's settings do not load:\n%v", err)
	}
}

// unitForVerify copies the unit into a temp dir with ExecStart pointing at
// an executable that exists here (systemd-analyze verify checks it).
func unitForVerify(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("systemd/pgbackups.service")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable() // a real executable; verify does not run it
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^ExecStart=\S+`)
	if !re.Match(b) {
		t.Fatal("no ExecStart")
	}
	path := filepath.Join(t.TempDir(), "pgbackups.service")
	if err := os.WriteFile(path, re.ReplaceAll(b, []byte("ExecStart="+exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func needSystemdAnalyze(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if inCI() {
			t.Fatal("systemd-analyze is not installed (apt-get install systemd); scripts/test.sh installs it")
		}
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	needSystemdAnalyze(t)
	unit := unitForVerify(t)
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// maxExposure is the worst `systemd-analyze security` score accepted: the
// unit scores 1.2 (systemd 252); a change that loosens the sandbox fails.
const maxExposure = 1.3

func TestSystemdAnalyzeSecurity(t *testing.T) {
	needSystemdAnalyze(t)
	unit := unitForVerify(t)
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", unit).CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("--offline")) {
		if inCI() {
			t.Fatalf("this systemd-analyze has no --offline (systemd 250+; scripts/test.sh installs Debian 12's 252): %s", out)
		}
		t.Skipf("this systemd-analyze has no --offline (systemd 250+): %s", out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
	if score > maxExposure {
		t.Errorf("exposure %.1f is above %.1f: the sandbox was loosened\n%s", score, maxExposure, out)
	}
	// README quotes the score; keep it true.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	q := regexp.MustCompile("`systemd-analyze security` rates (?:it|the unit) (\\d+\\.\\d+)").FindSubmatch(readme)
	if q == nil {
		t.Errorf("README.md does not quote the score as \"`systemd-analyze security` rates the unit %s\"", m[1])
	} else if string(q[1]) != string(m[1]) {
		t.Errorf("README.md quotes exposure %s; systemd-analyze now says %s", q[1], m[1])
	}
}

// TestSystemdNotifyDaemon runs the daemon under a fake service manager:
// with Type=notify, systemd kills a unit that never sends READY=1.
func TestSystemdNotifyDaemon(t *testing.T) {
	if !hasCommand("daemon") {
		t.Fatal("there is no daemon command, which systemd/pgbackups.service runs")
	}
	pg := testenv.PG(t)
	db := pg.CreateDB(t)
	sock := filepath.Join(testenv.SocketDir(t), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("PGBACKUPS_DATABASE_URL", pg.URL(db))
	t.Setenv("PGBACKUPS_STORAGE_URL", t.TempDir())
	t.Setenv("PGBACKUPS_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("PGBACKUPS_LOG_FORMAT", "text")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	m := &Main{Stdout: io.Discard, Stderr: &stderr}
	done := make(chan int, 1)
	go func() { done <- m.Run(ctx, []string{"daemon"}); m.Close() }()

	msgs := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	await := func(state string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		exited, code := done, 0 // exited is nil once the daemon has exited
		for {
			select {
			case msg := <-msgs:
				if slices.Contains(strings.Split(msg, "\n"), state) {
					return
				}
			case code = <-exited:
				// A datagram sent just before exiting may still be on its
				// way through the reader goroutine (select picks at random
				// when both channels are ready): give it 2 s. The exit code
				// goes back for the caller.
				done <- code
				exited, timeout = nil, time.After(2*time.Second)
			case <-timeout:
				if exited == nil {
					t.Fatalf("daemon exited %d before sending %s\n%s", code, state, stderr.String())
				}
				t.Fatalf("daemon sent no %s to NOTIFY_SOCKET in 60s (call sdnotify.Notify(sdnotify.%s)); systemd/pgbackups.service has Type=notify\n%s",
					state, map[string]string{"READY=1": "Ready", "STOPPING=1": "Stopping"}[state], stderr.String())
			}
		}
	}
	await("READY=1")
	cancel() // what SIGTERM does in main
	await("STOPPING=1")
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("daemon exited %d after SIGTERM, want 0\n%s", code, stderr.String())
		}
	case <-time.After(defaultShutdownGrace(t) + 10*time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
}

// ---------------------------------------------------------------- Kubernetes

type k8sObject = map[string]any

func parseYAMLFiles(t *testing.T, pattern string) map[string][]k8sObject {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	out := map[string][]k8sObject{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		for {
			var obj k8sObject
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj == nil {
				continue
			}
			for _, k := range []string{"apiVersion", "kind"} {
				if s, _ := obj[k].(string); s == "" {
					t.Errorf("%s: a document has no %s", f, k)
				}
			}
			if s, _ := dig(obj, "metadata", "name").(string); s == "" {
				t.Errorf("%s: a %v has no metadata.name", f, obj["kind"])
			}
			out[f] = append(out[f], obj)
		}
	}
	return out
}

// dig walks maps by key and lists by int index.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func list(v any) []map[string]any {
	var out []map[string]any
	l, _ := v.([]any)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func objectsOfKind(files map[string][]k8sObject, kind string) []k8sObject {
	var out []k8sObject
	for _, objs := range files {
		for _, o := range objs {
			if o["kind"] == kind {
				out = append(out, o)
			}
		}
	}
	return out
}

// checkPgbackupsContainer checks what both examples share: known variables,
// every secret from a file of a Secret volume whose key exists, a schedule
// that parses, resource limits and a non-root security context. It returns
// the container's environment.
func checkPgbackupsContainer(t *testing.T, where string, c map[string]any, pod map[string]any, secrets map[string]map[string]any) map[string]string {
	t.Helper()
	known, secret := configVars()
	env := map[string]string{}
	for _, e := range list(c["env"]) {
		name := str(e["name"])
		env[name] = str(e["value"])
		if strings.HasPrefix(name, config.Prefix+"_") && !known[name] {
			t.Errorf("%s: env %s is not a pgbackups variable", where, name)
		}
		if secret[name] {
			t.Errorf("%s: secret %s set directly; use %s_FILE from a Secret volume", where, name, name)
		}
	}
	if env["PGBACKUPS_DATABASE_URL_FILE"] == "" {
		t.Errorf("%s: no PGBACKUPS_DATABASE_URL_FILE", where)
	}
	if s := env["PGBACKUPS_SCHEDULE"]; s != "" {
		if _, err := schedule.Parse(s); err != nil {
			t.Errorf("%s: PGBACKUPS_SCHEDULE=%q: %v", where, s, err)
		}
	}
	// Each *_FILE is a key of a Secret mounted at its directory.
	volumes := map[string]map[string]any{}
	for _, v := range list(pod["volumes"]) {
		volumes[str(v["name"])] = v
	}
	mounts := map[string]string{} // mountPath -> volume name
	for _, m := range list(c["volumeMounts"]) {
		mounts[str(m["mountPath"])] = str(m["name"])
	}
	for name, path := range env {
		if !strings.HasSuffix(name, "_FILE") || !secret[strings.TrimSuffix(name, "_FILE")] {
			continue
		}
		vol := volumes[mounts[filepath.Dir(path)]]
		sname := str(dig(vol, "secret", "secretName"))
		if sname == "" {
			t.Errorf("%s: %s=%s is not in a mounted Secret volume", where, name, path)
			continue
		}
		s, ok := secrets[sname]
		if !ok {
			t.Errorf("%s: Secret %s is not in the examples", where, sname)
			continue
		}
		key := filepath.Base(path)
		if dig(s, "stringData", key) == nil && dig(s, "data", key) == nil {
			t.Errorf("%s: Secret %s has no key %s (for %s)", where, sname, key, name)
		}
	}
	for _, r := range []string{"cpu", "memory"} {
		if str(dig(c, "resources", "limits", r)) == "" || str(dig(c, "resources", "requests", r)) == "" {
			t.Errorf("%s: no resources.requests and limits for %s", where, r)
		}
	}
	sc := func(k string) any {
		if v := dig(c, "securityContext", k); v != nil {
			return v
		}
		return dig(pod, "securityContext", k)
	}
	d := parseDockerfile(t, "Dockerfile")
	uid, _, _ := strings.Cut(d.stages[len(d.stages)-1].last(t, "USER"), ":")
	if sc("runAsNonRoot") != true || str(sc("runAsUser")) != uid {
		t.Errorf("%s: want runAsNonRoot and runAsUser %s (the image's USER)", where, uid)
	}
	if sc("allowPrivilegeEscalation") != false || sc("readOnlyRootFilesystem") != true {
		t.Errorf("%s: want allowPrivilegeEscalation false and readOnlyRootFilesystem true", where)
	}
	if grace, _ := pod["terminationGracePeriodSeconds"].(int); time.Duration(grace)*time.Second <= defaultShutdownGrace(t) {
		t.Errorf("%s: terminationGracePeriodSeconds %v must exceed PGBACKUPS_SHUTDOWN_GRACE's default", where, pod["terminationGracePeriodSeconds"])
	}
	if args := dig(c, "args", 0); args != nil && !hasCommand(str(args)) && str(args) != "daemon" {
		t.Errorf("%s: args run %q, which is not a pgbackups command", where, args)
	}
	return env
}

func secretsByName(files map[string][]k8sObject) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, s := range objectsOfKind(files, "Secret") {
		out[str(dig(s, "metadata", "name"))] = s
	}
	return out
}

func TestKubernetesSidecar(t *testing.T) {
	files := parseYAMLFiles(t, "examples/kubernetes/*.yaml")
	secrets := secretsByName(files)
	var workloads []k8sObject
	for _, kind := range []string{"StatefulSet", "Deployment"} {
		workloads = append(workloads, objectsOfKind(files, kind)...)
	}
	if len(workloads) == 0 {
		t.Fatal("no StatefulSet or Deployment in examples/kubernetes")
	}
	for _, w := range workloads {
		where := str(w["kind"]) + "/" + str(dig(w, "metadata", "name"))
		pod, _ := dig(w, "spec", "template", "spec").(map[string]any)
		var pgb, pg map[string]any
		for _, c := range list(pod["containers"]) {
			img := str(c["image"])
			switch {
			case strings.Contains(img, "pgbackups"):
				pgb = c
			case strings.HasPrefix(img, "postgres"):
				pg = c
			}
		}
		if pgb == nil || pg == nil {
			t.Fatalf("%s: want a postgres container with a pgbackups sidecar", where)
		}
		// The postgres image stops with SIGINT (fast shutdown, every
		// session ended at once): without a hook holding it up, a pod
		// termination cuts an in-flight backup whatever the grace.
		if dig(pg, "lifecycle", "preStop") == nil {
			t.Errorf("%s: the postgres container needs a preStop hook that waits for pgbackups' sessions", where)
		}
		env := checkPgbackupsContainer(t, where, pgb, pod, secrets)
		if !strings.Contains(env["PGBACKUPS_STORAGE_URL"], "://") {
			t.Errorf("%s: PGBACKUPS_STORAGE_URL=%q; a pod's local disk is no place for backups", where, env["PGBACKUPS_STORAGE_URL"])
		}
		// The sidecar shares the pod's network: PostgreSQL is on 127.0.0.1.
		key := filepath.Base(env["PGBACKUPS_DATABASE_URL_FILE"])
		for name, s := range secrets {
			if u := str(dig(s, "stringData", key)); u != "" && !strings.Contains(u, "@127.0.0.1:") {
				t.Errorf("%s: Secret %s's %s is %s, want PostgreSQL at 127.0.0.1", where, name, key, u)
			}
		}

		port := defaultHTTPPort(t)
		if a := env["PGBACKUPS_HTTP_ADDR"]; a != "" {
			if _, p, err := net.SplitHostPort(a); err != nil || p != port {
				t.Errorf("%s: PGBACKUPS_HTTP_ADDR=%s, the checks below assume port %s", where, a, port)
			}
		}
		named := map[string]string{}
		for _, p := range list(pgb["ports"]) {
			named[str(p["name"])] = str(p["containerPort"])
		}
		for _, probe := range []string{"livenessProbe", "startupProbe"} {
			path, p := str(dig(pgb, probe, "httpGet", "path")), str(dig(pgb, probe, "httpGet", "port"))
			if named[p] != "" {
				p = named[p]
			}
			// /livez: /healthz is 503 after a failed backup, and a restart
			// then would kill its retries.
			if path != "/livez" || p != port {
				t.Errorf("%s: %s GET %s on port %s, want /livez on %s", where, probe, path, p, port)
			}
		}
		// A sidecar's readiness is the pod's: a failed backup must not take
		// PostgreSQL out of its Service.
		if pgb["readinessProbe"] != nil {
			t.Errorf("%s: the pgbackups sidecar has a readinessProbe; it would gate PostgreSQL's traffic on backup health", where)
		}
		ann, _ := dig(w, "spec", "template", "metadata", "annotations").(map[string]any)
		for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"} {
			if str(ann[k]) != v {
				t.Errorf("%s: pod annotation %s=%q, want %q", where, k, ann[k], v)
			}
		}
	}
}

func TestKubernetesCronJob(t *testing.T) {
	files := parseYAMLFiles(t, "examples/kubernetes/*.yaml")
	jobs := objectsOfKind(files, "CronJob")
	if len(jobs) == 0 {
		t.Fatal("no CronJob alternative in examples/kubernetes")
	}
	for _, j := range jobs {
		where := "CronJob/" + str(dig(j, "metadata", "name"))
		if str(dig(j, "spec", "concurrencyPolicy")) != "Forbid" {
			t.Errorf("%s: concurrencyPolicy must be Forbid: two dumps at once double the load", where)
		}
		pod, _ := dig(j, "spec", "jobTemplate", "spec", "template", "spec").(map[string]any)
		cs := list(pod["containers"])
		if len(cs) != 1 {
			t.Fatalf("%s: want one container, got %d", where, len(cs))
		}
		checkPgbackupsContainer(t, where, cs[0], pod, secretsByName(files))
		if a := str(dig(cs[0], "args", 0)); a != "capture" {
			t.Errorf("%s: runs %q, want capture", where, a)
		}
		if rp := str(pod["restartPolicy"]); rp != "Never" && rp != "OnFailure" {
			t.Errorf("%s: restartPolicy %q", where, rp)
		}
	}
}

// ---------------------------------------------------------------- healthcheck

func TestHealthcheckURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{":8080", "http://127.0.0.1:8080/healthz"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000/healthz"},
		{"[::]:8080", "http://127.0.0.1:8080/healthz"},
		{"127.0.0.1:8080", "http://127.0.0.1:8080/healthz"},
		{"[::1]:8080", "http://[::1]:8080/healthz"},
		{"10.1.2.3:8080", "http://10.1.2.3:8080/healthz"},
		{"localhost:8080", "http://localhost:8080/healthz"},
		{"off", ""},
		{"", ""},
		{"8080", ""},
		{"127.0.0.1:0", ""},
	} {
		got, err := healthzURL(tc.addr)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("healthzURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer that a daemon goroutine writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestHealthcheckCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"status":%q}`, http.StatusText(status))
		case "/slow/healthz":
			time.Sleep(2 * time.Second)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	runHC := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr}
		defer m.Close()
		code := m.Run(context.Background(), append([]string{"healthcheck"}, args...))
		return code, stdout.String(), stderr.String()
	}

	// Only PGBACKUPS_HTTP_ADDR matters: a configuration the daemon would
	// refuse is not the probe's business.
	t.Setenv("PGBACKUPS_HTTP_ADDR", addr)
	t.Setenv("PGBACKUPS_NICE", "not-a-number")
	t.Setenv("PGBACKUPS_KEEP_DAYLY", "3")
	if code, out, errs := runHC(); code != exitOK || !strings.Contains(out, `"OK"`) {
		t.Errorf("healthy: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	status = http.StatusServiceUnavailable
	if code, out, errs := runHC(); code != exitFailure || !strings.Contains(errs, "503") || !strings.Contains(out, "Service Unavailable") {
		t.Errorf("503: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// Nothing listening: exit 1 at once. A port below the ephemeral
	// range: one the kernel just handed out may go to another test's
	// connection before the healthcheck dials it.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("127.0.0.1:%d", port)
	t.Setenv("PGBACKUPS_HTTP_ADDR", closed)
	if code, _, errs := runHC(); code != exitFailure || !strings.Contains(errs, "refused") {
		t.Errorf("no daemon: exit %d, stderr %q", code, errs)
	}

	// A hung daemon: exit 1 after --timeout.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close() // accepts into the backlog, never answers
	t.Setenv("PGBACKUPS_HTTP_ADDR", hung.Addr().String())
	start := time.Now()
	if code, _, errs := runHC("--timeout", "300ms"); code != exitFailure || time.Since(start) > 5*time.Second {
		t.Errorf("hung daemon: exit %d after %s, stderr %q", code, time.Since(start), errs)
	}

	for _, bad := range []string{"off", "nonsense"} {
		t.Setenv("PGBACKUPS_HTTP_ADDR", bad)
		if code, _, errs := runHC(); code != exitFailure || !strings.Contains(errs, "PGBACKUPS_HTTP_ADDR") {
			t.Errorf("HTTP_ADDR=%s: exit %d, stderr %q; want 1 naming the variable", bad, code, errs)
		}
	}

	// Unset: the default from the config struct.
	os.Unsetenv("PGBACKUPS_HTTP_ADDR") // t.Setenv above restores it
	if name, a := httpAddrFromEnv(); name != "PGBACKUPS_HTTP_ADDR" || a != configDefault(t, "HTTP_ADDR") {
		t.Errorf("httpAddrFromEnv() = %s, %q", name, a)
	}
}
