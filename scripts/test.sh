#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what the tests
# need (PostgreSQL from apt, VersityGW as the S3 server, systemd-analyze),
# then runs every test. Integration tests start their own throwaway
# PostgreSQL clusters and S3 server on 127.0.0.1; nothing needs to be
# running beforehand. `.ci/run` runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSITYGW_VERSION=v1.8.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pgbackups"
export PGBACKUPS_TEST_VERSITYGW="$CACHE/bin/versitygw"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v go >/dev/null; then
	echo "test.sh: Go 1.26.8+ is required (https://go.dev/dl/); it is not on PATH" >&2
	exit 2
fi

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ls /usr/share/postgresql/*/extension/pg_trgm.control >/dev/null 2>&1 || need+=(postgresql-contrib)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v zstd >/dev/null || need+=(zstd)
# The race detector needs cgo, so a C compiler.
command -v gcc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
	echo "test.sh: installing ${need[*]} from apt"
	as_root apt-get update -qq
	# The packaged cluster is not used: tests run initdb in temp dirs.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$PGBACKUPS_TEST_VERSITYGW" ]; then
	echo "test.sh: installing versitygw $VERSITYGW_VERSION into $CACHE/bin (about 2.5 minutes, once)"
	mkdir -p "$CACHE/bin"
	GOBIN="$CACHE/bin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi

# Everything the suite needs is installed: integration tests must run, never skip.
export CI=true
go vet ./...
go test -race -count=1 -timeout 30m ./...
