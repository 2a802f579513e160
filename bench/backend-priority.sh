#!/usr/bin/env bash
# Does lowering the SERVER backend's priority help? pgbackups lowers its own
# and pg_dump's priority; the backend doing the COPY runs at normal
# priority. This script renices that backend by hand (nice 19, or
# SCHED_IDLE) while pgbackups captures database B and a fixed-rate pgbench
# runs on database A (the same set-up as bench/nostall.sh, shorter), and
# reports pgbench latency per window. Needs root (the backend belongs to the
# postgres user).
# Usage: bench/backend-priority.sh   (SCALE, DB_MB, CLIENTS, RATE_FRAC, MODES)
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-50}
DB_MB=${DB_MB:-1024}
CLIENTS=${CLIENTS:-8}
RATE_FRAC=${RATE_FRAC:-0.6}
RATE=${RATE:-}   # pgbench -R; empty: RATE_FRAC x the capacity measured first
MODES=${MODES:-base defaults nice19 sched_idle base}
OUT=${OUT:-$BENCH_DIR/results-backend-priority.md}
DB_A=prio_a DB_B=prio_b
for v in $(compgen -v PGBACKUPS_ || true); do unset "$v"; done
[ "$(id -u)" = 0 ] || { echo "run as root: the server backend belongs to another user" >&2; exit 2; }

BG=()
trap 'for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done; cleanup' EXIT
now() { date +%s.%N; }
sql() { "$PGBIN/psql" -Atq -d "$(db_url "$1")" -c "$2"; }

start_postgres
build_pgbackups
make_db "$DB_B" "$DB_MB"
make_pgbench_db "$DB_A" "$SCALE"
sql "$DB_B" CHECKPOINT
"$PGBIN/pg_dump" -Fc -Z0 --no-sync -f /dev/null -d "$(db_url "$DB_B")" # warm the cache
CAPACITY=$("$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T 20 "$DB_A" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
[ -n "$RATE" ] || RATE=$(awk -v c="$CAPACITY" -v f="$RATE_FRAC" 'BEGIN{printf "%d", c * f}')
"$PGBIN/pgbench" -R "$RATE" -c "$CLIENTS" -j 2 -T 3600 -P 1 -l --log-prefix="$WORK/pgb" "$DB_A" >/dev/null 2>"$WORK/progress" &
BG+=($!)
sleep 20

# renice_backend MODE: wait for the dump's backend, then lower it.
renice_backend() {
	local pid=
	for _ in $(seq 400); do
		pid=$(sql postgres "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgbackups-dump-%'" | head -1)
		[ -n "$pid" ] && break
		sleep 0.05
	done
	[ -n "$pid" ] || { echo "the dump's backend never showed up" >&2; return 1; }
	case $1 in
	nice19) renice -n 19 -p "$pid" >/dev/null ;;
	sched_idle) chrt -i -p 0 "$pid" ;;
	esac
	ionice -c 3 -p "$pid"
}
capture() {
	env PGBACKUPS_DATABASE_URL="$(db_url "$DB_B")" PGBACKUPS_STORAGE_URL="$WORK/local" PGBACKUPS_GLOBALS=false \
		"$PGBACKUPS" capture >/dev/null 2>>"$WORK/capture.err"
}
: > "$WORK/windows"
for mode in $MODES; do
	sleep 5; sql postgres CHECKPOINT; sleep 5
	# Start each window with pgbench on schedule (lag under 10 ms for 5 s).
	on_schedule "$WORK/progress" 10 120 || true
	rm -rf "$WORK/local"
	echo "[$(date +%T)] $mode" >&2
	t0=$(now)
	case $mode in
	base) sleep 30 ;;
	defaults) capture ;;
	*) renice_backend "$mode" & r=$!; capture; wait "$r" ;;
	esac
	echo "$mode $t0 $(now)" >> "$WORK/windows"
done

python3 - "$WORK" "$RATE" "$CAPACITY" "$(machine_line)" \
	"SCALE=$SCALE DB_MB=$DB_MB CLIENTS=$CLIENTS RATE_FRAC=$RATE_FRAC RATE=$RATE MODES=\"$MODES\" bench/backend-priority.sh" "$BENCH_DIR" <<'PY' | tee "$OUT"
import sys
work, rate, cap, machine, command, bench = sys.argv[1:7]
sys.path.insert(0, bench)
from pgblog import load, pct
tx = load(work + "/pgb")
what = {
    "base": "no backup",
    "defaults": "pgbackups defaults (pg_dump and compressor at nice 10, idle IO; backend untouched)",
    "nice19": "defaults + server backend reniced to 19, idle IO",
    "sched_idle": "defaults + server backend SCHED_IDLE, idle IO",
}
print("## Lowering the server backend's priority\n")
print(f"- Machine: {machine}")
print(f"- Command: `{command}`")
print(f"- Workload: pgbench -R {rate} -c 8 -j 2 on A (unthrottled capacity measured at {float(cap):.0f} tps); B ~1 GB captured to a local directory. Each window starts once pgbench is back on schedule.\n")
print("| Window | Setting | Duration (s) | p50 (ms) | p99 (ms) | max (ms) |")
print("|---|---|---|---|---|---|")
for line in open(work + "/windows"):
    mode, t0, t1 = line.split()
    t0, t1 = float(t0), float(t1)
    ls = sorted(l for s, _, l in tx if t0 <= s < t1)
    if not ls:
        continue
    print(f"| {mode} | {what.get(mode, mode)} | {t1 - t0:.1f} | {pct(ls, .5) * 1000:.2f} | {pct(ls, .99) * 1000:.1f} | {ls[-1] * 1000:.0f} |")
PY
