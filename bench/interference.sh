#!/usr/bin/env bash
# What moves a fixed-rate pgbench's p99 on this machine? Separates a
# backup's parts from plain CPU load, to tell what a client-side tool can
# change. Same set-up as bench/nostall.sh (database A under pgbench -R at
# RATE_FRAC of its capacity, database B of DB_MB); windows of WIN seconds:
#   none      no extra work;
#   idle-loop one busy loop at SCHED_IDLE, the lowest CPU priority Linux has;
#   duty-loop one loop at nice 0, busy 30 ms of every 100 ms (15% of 2 CPUs);
#   copy      the server's COPY of B alone, read at COPY_RATE by psql | pv -L
#             (nothing compressed or stored: the backend's share of a dump);
#   tmpfs     pgbackups capture at MAX_RATE=COPY_RATE (defaults otherwise)
#             into a local directory on tmpfs;
#   disk      the same into a local directory on PostgreSQL's disk.
# The scenarios run REPS times, interleaved; the summary gives each one's
# median p99 over its runs against the median p99 of the "none" windows.
# Prints markdown and writes it to OUT (bench/results-interference.md).
# Usage: bench/interference.sh   (knobs below as environment variables)
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-50}
DB_MB=${DB_MB:-1024}
CLIENTS=${CLIENTS:-8}
RATE_FRAC=${RATE_FRAC:-0.6}
WIN=${WIN:-40}                 # seconds of the none/loop windows; copy and captures last a dump
COPY_RATE=${COPY_RATE:-8MiB}
REPS=${REPS:-2}
SCENARIOS=${SCENARIOS:-none idle-loop duty-loop copy tmpfs disk}
SHM=${SHM:-/dev/shm}
OUT=${OUT:-$BENCH_DIR/results-interference.md}
DB_A=interf_a DB_B=interf_b
for v in $(compgen -v PGBACKUPS_ || true); do unset "$v"; done
command -v pv >/dev/null || { echo "needs pv (apt-get install pv)" >&2; exit 2; }
[ "$(stat -f -c %T "$SHM" 2>/dev/null)" = tmpfs ] || { echo "$SHM is not tmpfs" >&2; exit 2; }

BG=()
SHM_STORE=$(mktemp -d "$SHM/pgbackups-interference-XXXXXX")
trap 'for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$SHM_STORE"; cleanup' EXIT
say() { echo "[$(date +%T)] $*" >&2; }
now() { date +%s.%N; }
sql() { "$PGBIN/psql" -Atq -d "$(db_url "$1")" -c "$2"; }
START=$(date +%s)

start_postgres
build_pgbackups
say "creating $DB_B (~$DB_MB MB) and $DB_A (pgbench scale $SCALE)"
make_db "$DB_B" "$DB_MB"
make_pgbench_db "$DB_A" "$SCALE"
sql "$DB_B" CHECKPOINT
"$PGBIN/pg_dump" -Fc -Z0 --no-sync -f /dev/null -d "$(db_url "$DB_B")" # warm the cache
CAPACITY=$("$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T 20 "$DB_A" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
RATE=$(awk -v c="$CAPACITY" -v f="$RATE_FRAC" 'BEGIN{printf "%d", c * f}')
say "capacity $CAPACITY tps; workload rate $RATE tps"
"$PGBIN/pgbench" -R "$RATE" -c "$CLIENTS" -j 2 -T 7200 -P 1 -l --log-prefix="$WORK/pgb" "$DB_A" >/dev/null 2>"$WORK/progress" &
PGB=$!
BG+=("$PGB")
sleep 20

# busy_loop PCT: a python loop busy PCT ms of every 100 ms for WIN s.
busy_loop() {
	python3 -c "
import time
end = time.time() + $WIN
while time.time() < end:
    t = time.time() + $1 / 1000
    while time.time() < t:
        pass
    if $1 < 100:
        time.sleep((100 - $1) / 1000)"
}
capture() {
	env PGBACKUPS_DATABASE_URL="$(db_url "$DB_B")" PGBACKUPS_STORAGE_URL="$1" PGBACKUPS_GLOBALS=false \
		PGBACKUPS_MAX_RATE="$COPY_RATE" "$PGBACKUPS" capture >/dev/null
}
pv_rate() { echo "$COPY_RATE" | sed 's/MiB$/m/; s/KiB$/k/; s/GiB$/g/'; }

: > "$WORK/windows"
for rep in $(seq "$REPS"); do
	for s in $SCENARIOS; do
		sleep 5; sql postgres CHECKPOINT; sleep 3
		on_schedule "$WORK/progress" 10 120 "$PGB" || say "warning: pgbench not back on schedule"
		say "run $rep: $s"
		t0=$(now)
		case $s in
		none) sleep "$WIN" ;;
		idle-loop) chrt -i 0 bash -c "$(declare -f busy_loop); WIN=$WIN; busy_loop 100" ;;
		duty-loop) busy_loop 30 ;;
		copy) "$PGBIN/psql" -Atq -d "$(db_url "$DB_B")" -c "COPY events TO STDOUT" | pv -q -L "$(pv_rate)" >/dev/null ;;
		tmpfs) capture "$SHM_STORE/local" ;;
		disk) capture "$WORK/local" ;;
		*) echo "unknown scenario $s" >&2; exit 2 ;;
		esac 2>>"$WORK/errors"
		echo "$s $rep $t0 $(now)" >> "$WORK/windows"
		# After the window, never at its start: unlinking a stored backup
		# stalls commits on the same disk (bench/delete.sh).
		rm -rf "$SHM_STORE/local" "$WORK/local"
	done
done
sleep 3
ELAPSED=$(( $(date +%s) - START ))

python3 - "$WORK" "$BENCH_DIR" "$(machine_line)" "$RATE" "$CAPACITY" "$ELAPSED" \
	"SCALE=$SCALE DB_MB=$DB_MB CLIENTS=$CLIENTS RATE_FRAC=$RATE_FRAC WIN=$WIN COPY_RATE=$COPY_RATE REPS=$REPS bench/interference.sh" \
	"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY' | tee "$OUT"
import bisect, statistics, sys
work, bench, machine, rate, cap, elapsed, command, commit = sys.argv[1:9]
sys.path.insert(0, bench)
from pgblog import load, pct

txs = load(work + "/pgb")
starts = [t[0] for t in txs]
what = {
    "none": "no extra work",
    "idle-loop": "one busy loop at SCHED_IDLE (lowest CPU priority)",
    "duty-loop": "one loop at nice 0, busy 30 ms of every 100 ms",
    "copy": "server COPY of B alone, read at the rate limit (psql \\| pv -L)",
    "tmpfs": "pgbackups capture at MAX_RATE, stored on tmpfs",
    "disk": "pgbackups capture at MAX_RATE, stored on PostgreSQL's disk",
}
runs = {}
for line in open(work + "/windows"):
    s, rep, t0, t1 = line.split()
    t0, t1 = float(t0), float(t1)
    lats = sorted(t[2] for t in txs[bisect.bisect_left(starts, t0):bisect.bisect_left(starts, t1)])
    runs.setdefault(s, []).append((t1 - t0, pct(lats, .5) * 1e3, pct(lats, .99) * 1e3))
ref = statistics.median(r[2] for r in runs["none"])
print("## What moves pgbench's p99 on this machine\n")
print(f"- Machine: {machine}")
print(f"- Command: `{command}` at commit {commit} ({int(elapsed) // 60} min)")
print(f"- Workload: `pgbench -R {rate} -c 8 -j 2` on A (unthrottled capacity {float(cap):.0f} tps); "
      "latency from the scheduled start, over the transactions scheduled in each window.")
print(f"- Reference: the median p99 of the no-extra-work windows, {ref:.1f} ms.\n")
print("| Scenario | What runs beside pgbench | Window (s) | p50 (ms) per run | p99 (ms) per run | median p99 vs none |")
print("|---|---|---|---|---|---|")
for s, rs in runs.items():
    print(f"| {s} | {what.get(s, s)} | {statistics.median(r[0] for r in rs):.0f} | "
          f"{' / '.join(f'{r[1]:.1f}' for r in rs)} | {' / '.join(f'{r[2]:.1f}' for r in rs)} | "
          f"{statistics.median(r[2] for r in rs) / ref:.2f}x |")
PY
