#!/usr/bin/env bash
# What deleting a backup file does to a database's commits on the same
# disk: a fixed-rate pgbench (-R RATE, per-transaction log) runs while a
# FILE_MB file of random bytes (a stored backup) is deleted, REPS times
# each way:
#   rm        unlink at once (what the local store did before);
#   gentle    the local store's Delete (storage/file/remove.go: renamed,
#             then truncated SHRINK_MB at a time, 20 ms apart);
#   gentle32  the same with 32 MiB steps.
# Reports, per way, the transactions scheduled from 0.2 s before the delete
# to 2 s after it ends: how many, how many over 30 ms, the slowest.
# Usage: bench/delete.sh   (knobs below as environment variables)
source "$(dirname "$0")/lib.sh"
SCALE=${SCALE:-20}
RATE=${RATE:-500}
FILE_MB=${FILE_MB:-320}
REPS=${REPS:-3}
OUT=${OUT:-$BENCH_DIR/results-delete.md}
say() { echo "[$(date +%T)] $*" >&2; }
START=$(date +%s)
start_postgres
make_pgbench_db del_a "$SCALE"
"$PGBIN/pgbench" -R "$RATE" -c 8 -j 2 -T 3600 -P 1 -l --log-prefix="$WORK/pgb" "$(db_url del_a)" >/dev/null 2>"$WORK/progress" &
PGB=$!
trap 'kill $PGB 2>/dev/null; cleanup' EXIT
sleep 15
# gentle STEP_MB: shrink and unlink like storage/file/remove.go.
gentle() {
	python3 - "$WORK/big" "$1" <<'PY'
import os, sys, time
path, step = sys.argv[1], int(sys.argv[2]) << 20
fd = os.open(path, os.O_WRONLY)
size = os.fstat(fd).st_size - step
while size > 0:
    os.ftruncate(fd, size)
    time.sleep(0.02)
    size -= step
os.close(fd)
os.unlink(path)
PY
}
: > "$WORK/windows"
for rep in $(seq "$REPS"); do
	for how in rm gentle gentle32; do
		head -c "${FILE_MB}M" /dev/urandom > "$WORK/big"
		sync -f "$WORK/big"; sleep 8   # its writeback done, pgbench quiet again
		say "$rep: $how"
		t0=$(date +%s.%N)
		case $how in
		rm) rm -f "$WORK/big" ;;
		gentle) gentle 8 ;;
		gentle32) gentle 32 ;;
		esac
		echo "$how|$rep|$t0|$(date +%s.%N)" >> "$WORK/windows"
		sleep 3
	done
done
sleep 2
python3 - "$WORK" "$BENCH_DIR" "$(machine_line)" "$(findmnt -no OPTIONS -T "$WORK")" \
	"SCALE=$SCALE RATE=$RATE FILE_MB=$FILE_MB REPS=$REPS bench/delete.sh" "$(( $(date +%s) - START ))" <<'PY' | tee "$OUT"
import sys
work, bench, machine, mnt, command, elapsed = sys.argv[1:7]
sys.path.insert(0, bench)
from pgblog import load
txs = load(work + "/pgb")
print("## Deleting a stored backup beside a busy database\n")
print(f"- Machine: {machine}; filesystem options: {mnt}")
print(f"- Command: `{command}` ({int(elapsed) // 60} min); pgbench -R at the rate given, 8 clients, on the same disk.\n")
print("| Way | Run | Delete took (s) | Transactions | Over 30 ms | Slowest (ms) |")
print("|---|---|---|---|---|---|")
for l in open(work + "/windows"):
    how, rep, t0, t1 = l.strip().split("|")
    t0, t1 = float(t0), float(t1)
    w = sorted(t[2] for t in txs if t0 - 0.2 <= t[0] <= t1 + 2)
    print(f"| {how} | {rep} | {t1 - t0:.2f} | {len(w)} | {sum(1 for x in w if x > 0.03)} | {w[-1] * 1e3:.0f} |")
PY
