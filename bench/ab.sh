#!/usr/bin/env bash
# Interleaved A/B of capture variants against one fixed pgbench load: the
# quick way to compare two settings or two builds when bench/nostall.sh's
# rounds are too coarse (the host's noise moves between rounds; here every
# variant sees the same stretch of it, rep after rep).
#
# It reuses the cluster a bench/nostall.sh run left behind:
#   BENCH_WORK=/tmp/bench/w BENCH_KEEP=1 SCALE=50 DB_MB=1024 ... bench/nostall.sh
#   W=/tmp/bench/w RATE=500 REPS=5 bench/ab.sh "none" \
#     "defaults||/path/to/pgbackups" \
#     "fixed20|PGBACKUPS_MAX_RATE=20MiB|/path/to/pgbackups" \
#     "idle|PGBACKUPS_NICE=0|chrt -i 0 /path/to/pgbackups|chrt -i -p 0"
# Each variant is "label|env|command|backend-command": env is a list of
# VAR=value words for the capture, command runs it (`capture` is appended),
# and backend-command, if given, is run with the pid of the dump's server
# backend appended once it appears. The label "none" is a window of WIN
# seconds with no backup: the yardstick.
#
# Before each window: 5 s, CHECKPOINT, and pgbench back on schedule (lag
# under 10 ms for 5 s in a row). The table at the end gives, per variant,
# each window's duration and pgbench latency p50/p99/max (from the
# scheduled start, transactions scheduled inside the window), and the
# median p99 over the none windows' median.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
W=${W:?W: the work directory of a BENCH_KEEP=1 bench/nostall.sh run}
RATE=${RATE:?RATE: pgbench -R transactions per second}
REPS=${REPS:-5}
WIN=${WIN:-30}
CLIENTS=${CLIENTS:-8}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
OUTD=${OUTD:-$W/ab-$(date +%Y%m%d-%H%M%S)}
PORT=$(sed -n 's/^port = //p' "$W/pgdata/postgresql.conf" | tail -1)
export PGPASSWORD=bench-pw
url() { echo "postgres://postgres:bench-pw@127.0.0.1:$PORT/$1?sslmode=disable"; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$OUTD"
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w start >/dev/null
PGB=
trap '[ -n "$PGB" ] && kill $PGB 2>/dev/null; as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m fast stop >/dev/null' EXIT
"$PGBIN/pgbench" -R "$RATE" -c "$CLIENTS" -j 2 -T 86400 -P 1 -l --log-prefix="$OUTD/pgb" "$(url nostall_a)" >/dev/null 2>"$OUTD/progress" &
PGB=$!
sleep 20
: >"$OUTD/windows"

settle() {
	sleep 5
	"$PGBIN/psql" -Atq -d "$(url postgres)" -c CHECKPOINT
	sleep 3
	local ok=0 lag
	for _ in $(seq 60); do
		sleep 1
		lag=$(tail -n1 "$OUTD/progress" | sed -n 's/.*lag \([0-9.]*\) ms.*/\1/p')
		if [ -n "$lag" ] && awk -v l="$lag" 'BEGIN{exit !(l<10)}'; then ok=$((ok + 1)); else ok=0; fi
		[ $ok -ge 5 ] && break
	done
}

backend_pid() {
	"$PGBIN/psql" -Atq -d "$(url postgres)" -c "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-dump-%'"
}

for rep in $(seq "$REPS"); do
	for spec in "$@"; do
		IFS='|' read -r label envs cmd becmd <<<"$spec"
		# Not at once: the unlink of the last capture's file stalls commits
		# (bench/delete.sh), and transactions of the window just ended may
		# still be in flight.
		sleep 2
		rm -rf "$OUTD/store"
		sync
		settle
		echo "[$(date +%T)] rep $rep: $label" >&2
		t0=$(date +%s.%N)
		if [ "$label" = none ]; then
			sleep "$WIN"
		else
			# shellcheck disable=SC2086 # env words and the command are lists
			env PGBACKUPS_DATABASE_URL="$(url nostall_b)" PGBACKUPS_STORAGE_URL="$OUTD/store" PGBACKUPS_GLOBALS=false \
				PGBACKUPS_LOG_FORMAT=json $envs $cmd capture >"$OUTD/cap.out" 2>"$OUTD/cap-$rep-$label.err" &
			job=$!
			if [ -n "${becmd:-}" ]; then
				pid=
				for _ in $(seq 100); do pid=$(backend_pid); [ -n "$pid" ] && break; sleep 0.05; done
				# shellcheck disable=SC2086
				[ -n "$pid" ] && $becmd "$pid" >&2
			fi
			wait $job || echo "capture failed: $OUTD/cap-$rep-$label.err" >&2
		fi
		echo "$label|$rep|$t0|$(date +%s.%N)" >>"$OUTD/windows"
	done
done

python3 - "$OUTD" "$BENCH_DIR" <<'PY' | tee "$OUTD/results.txt"
import bisect, statistics, sys
sys.path.insert(0, sys.argv[2])
from pgblog import load, pct
d = sys.argv[1]
txs = load(d + '/pgb')
starts = [t[0] for t in txs]
res = {}
for line in open(d + '/windows'):
    lab, rep, t0, t1 = line.strip().split('|')
    t0, t1 = float(t0), float(t1)
    lat = sorted(t[2] for t in txs[bisect.bisect_left(starts, t0):bisect.bisect_left(starts, t1)])
    res.setdefault(lab, []).append((t1 - t0, pct(lat, .5) * 1e3, pct(lat, .99) * 1e3, lat[-1] * 1e3))
ref = statistics.median(r[2] for r in res['none']) if 'none' in res else None
for lab, rs in res.items():
    med = statistics.median(r[2] for r in rs)
    vs = f' = {med / ref:.2f}x' if ref else ''
    print(f"{lab:12} dur {' '.join(f'{r[0]:5.1f}' for r in rs)} | p50 {' '.join(f'{r[1]:5.2f}' for r in rs)}"
          f" | p99 {' '.join(f'{r[2]:6.1f}' for r in rs)} | max {' '.join(f'{r[3]:5.0f}' for r in rs)} | median p99 {med:6.1f}{vs}")
PY
