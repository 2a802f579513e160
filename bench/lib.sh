# Shared helpers for the benchmarks: a throwaway PostgreSQL cluster and a
# VersityGW S3 server on 127.0.0.1, torn down on exit. Sourced, not run.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=${BENCH_WORK:-$(mktemp -d /tmp/pgbackups-bench-XXXXXX)}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
VERSITYGW=${PGBACKUPS_TEST_VERSITYGW:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbackups/bin/versitygw}
PGPASSWORD_BENCH=bench-pw
export PGPASSWORD=$PGPASSWORD_BENCH
S3_ACCESS=benchaccess S3_SECRET=benchsecret1234

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
	[ -n "${PGPORT:-}" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m immediate stop >/dev/null 2>&1 || true
	[ -n "${GW_PID:-}" ] && kill "$GW_PID" 2>/dev/null || true
	[ -z "${BENCH_KEEP:-}" ] && rm -rf "$WORK" || true
}
trap cleanup EXIT

start_postgres() {
	mkdir -p "$WORK/pgdata" && chmod 755 "$WORK"
	[ "$(id -u)" = 0 ] && chown postgres "$WORK" "$WORK/pgdata"
	echo "$PGPASSWORD_BENCH" > "$WORK/pw" && chmod 644 "$WORK/pw"
	as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres --pwfile="$WORK/pw" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
	PGPORT=$(free_port)
	cat >> "$WORK/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
shared_buffers = 512MB
max_connections = 100
checkpoint_timeout = 15min
max_wal_size = 4GB
CONF
	as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/pg.log" -w start >/dev/null
	export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
}

db_url() { echo "postgres://postgres:$PGPASSWORD_BENCH@127.0.0.1:$PGPORT/$1?sslmode=disable"; }

start_s3() {
	GW_PORT=$(free_port)
	mkdir -p "$WORK/s3"
	ROOT_ACCESS_KEY=$S3_ACCESS ROOT_SECRET_KEY=$S3_SECRET "$VERSITYGW" --port "127.0.0.1:$GW_PORT" posix "$WORK/s3" >"$WORK/s3.log" 2>&1 &
	GW_PID=$!
	for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GW_PORT" && break; sleep 0.1; done
	mkdir -p "$WORK/s3/bench"   # a bucket is a directory of the posix backend
}

s3_env() {
	echo "AWS_ENDPOINT_URL_S3=http://127.0.0.1:$GW_PORT AWS_ACCESS_KEY_ID=$S3_ACCESS AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=us-east-1 PGBACKUPS_STORAGE_URL=s3://bench/$1"
}

build_pgbackups() {
	if [ -n "${BENCH_PGBACKUPS_BIN:-}" ]; then PGBACKUPS=$BENCH_PGBACKUPS_BIN; return; fi
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/pgbackups" .)
	PGBACKUPS=$WORK/pgbackups
}

# make_db NAME MB: a database of about MB megabytes of realistic, not too
# compressible rows (random text, uuids, jsonb, numerics, timestamps).
make_db() {
	local name=$1 mb=$2 rows
	rows=$((mb * 1024 * 1024 / 420))
	"$PGBIN/psql" -q -d "$(db_url postgres)" -c "CREATE DATABASE $name"
	"$PGBIN/psql" -q -d "$(db_url "$name")" <<SQL
CREATE TABLE events (
  id bigserial PRIMARY KEY,
  account uuid NOT NULL,
  kind text NOT NULL,
  amount numeric(14,4) NOT NULL,
  at timestamptz NOT NULL,
  note text,
  payload jsonb NOT NULL
);
INSERT INTO events (account, kind, amount, at, note, payload)
SELECT gen_random_uuid(),
       (ARRAY['signup','login','purchase','refund','logout','upgrade'])[1 + (random()*5)::int],
       round((random() * 100000)::numeric, 4),
       now() - random() * interval '700 days',
       CASE WHEN random() < 0.7 THEN
         (SELECT string_agg((ARRAY['order','shipped','customer','delayed','payment','card','address','the','a','to','of','and','failed','ok','retry','Zürich','東京','São Paulo'])[1 + (random()*17)::int], ' ') FROM generate_series(1, 8 + (g % 12)))
       END,
       jsonb_build_object('ip', (random()*255)::int || '.' || (random()*255)::int || '.' || (random()*255)::int || '.' || (random()*255)::int,
                          'ua', 'Mozilla/5.0 (' || md5(random()::text) || ')',
                          'session', md5(random()::text) || md5(random()::text),
                          'items', (random()*10)::int, 'ok', random() < 0.9)
FROM generate_series(1, $rows) g;
CREATE INDEX ON events (account);
VACUUM ANALYZE events;
SQL
}

db_size() { "$PGBIN/psql" -Atq -d "$(db_url "$1")" -c "SELECT pg_database_size(current_database())"; }

# measure LABEL CMD...: wall seconds and peak RSS (KiB) of a command (its
# whole process tree as GNU time reports the largest child).
measure() {
	local label=$1; shift
	/usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/last.err" || { echo "$label failed:" >&2; cat "$WORK/last.err" >&2; return 1; }
	read -r WALL RSS < "$WORK/time.out"
}

# machine_line: the machine and PostgreSQL, one line for a results header.
machine_line() {
	echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r); $("$PGBIN/postgres" --version)"
}

# make_pgbench_db NAME SCALE: a pgbench-initialized database (scale 1 is
# 100,000 accounts, about 15 MB), vacuumed and checkpointed.
make_pgbench_db() {
	"$PGBIN/psql" -q -d "$(db_url postgres)" -c "CREATE DATABASE $1"
	"$PGBIN/pgbench" -i -q -s "$2" "$(db_url "$1")" >"$WORK/pgbench-init-$1.log" 2>&1
	"$PGBIN/psql" -q -d "$(db_url postgres)" -c CHECKPOINT
}

# on_schedule PROGRESS LAG_MS MAX_S [PID]: wait until a fixed-rate pgbench
# (-R ... -P 1, progress on stderr in PROGRESS) reports a schedule lag under
# LAG_MS for 5 reports in a row; at most MAX_S seconds. Returns 1 if it did
# not settle; exits the script if PID (that pgbench) is gone.
on_schedule() {
	local progress=$1 lag_ms=$2 max_s=$3 pid=${4:-} ok=0 lag
	for _ in $(seq "$max_s"); do
		sleep 1
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo "pgbench died:" >&2; tail -5 "$progress" >&2; exit 1
		fi
		lag=$(tail -n1 "$progress" | sed -n 's/.*lag \([0-9.]*\) ms.*/\1/p')
		if [ -n "$lag" ] && awk -v l="$lag" -v t="$lag_ms" 'BEGIN{exit !(l < t)}'; then ok=$((ok + 1)); else ok=0; fi
		[ "$ok" -ge 5 ] && return 0
	done
	return 1
}

# io_schedulers: the active IO scheduler of each real block device.
io_schedulers() {
	local f d out=()
	for f in /sys/block/*/queue/scheduler; do
		d=${f#/sys/block/}; d=${d%%/*}
		case $d in loop*|ram*|zram*) continue ;; esac
		out+=("$d: $(sed -n 's/.*\[\(.*\)\].*/\1/p' "$f")")
	done
	local IFS=,; echo "${out[*]:-unknown}"
}
