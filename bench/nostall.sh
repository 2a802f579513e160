#!/usr/bin/env bash
# No-stall benchmark (issue 5). In one run, on one machine, one PostgreSQL
# cluster:
#   database A: pgbench -i -s SCALE, driven by ONE continuous fixed-rate
#               pgbench (-R RATE -c CLIENTS -j 2, per-transaction log), RATE
#               being RATE_FRAC of the capacity measured first;
#   database B: make_db B DB_MB, backed up once per scenario while A runs.
# Scenarios: no backup (three windows: start, middle, end, to show the noise),
# plain pg_dump -Fc -f file, pgbackups capture unthrottled, with its defaults
# (MAX_RATE=auto, BACKEND_NICE=10), the defaults with BACKEND_NICE=0, with the
# default priority but MAX_RATE=off (also into
# tmpfs, as a control), and with PGBACKUPS_MAX_RATE at MAX_RATES. Storage is the local
# directory backend (a directory in $WORK, same disk as PostgreSQL).
# With ROUNDS > 1, the target's scenarios (no backup, plain pg_dump -Fc, the
# defaults, the defaults with BACKEND_NICE=0) are then run ROUNDS-1 more times, so the verdict rests
# on the median of several rounds, each judged against its own no-backup
# window, rather than on one window of a noisy machine.
# Before each window: CHECKPOINT, then wait until pgbench is back on schedule.
# A window is the backup's wall time; latency stats cover the transactions
# SCHEDULED to start in it (pgbench -R latency counts from the scheduled
# start, so queueing behind a slow database is included), tps counts those
# that completed in it.
# Then the lock-queue scenario (A's workload stopped): a capture of B limited
# to last ~LOCK_SECS, an ALTER TABLE events ADD COLUMN at +5 s, and
# LOCK_QPS fixed-rate point SELECTs on events, with PGBACKUPS_ON_BLOCKING=warn
# (default) and with abort + BLOCKING_THRESHOLD=2s.
# Prints a markdown section and writes it to OUT (bench/results-nostall.md).
# Usage: bench/nostall.sh   (knobs below as environment variables)
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-50}
DB_MB=${DB_MB:-1024}
CLIENTS=${CLIENTS:-8}
RATE_FRAC=${RATE_FRAC:-0.3}
RATE=${RATE:-}                     # pgbench -R; empty: RATE_FRAC x measured capacity
BASE_SECS=${BASE_SECS:-60}
BASE_LONG_SECS=${BASE_LONG_SECS:-180}  # the last no-backup window, as long as the slowest backup
MAX_RATES=${MAX_RATES-10MiB 20MiB 40MiB}
ROUNDS=${ROUNDS:-3}                # rounds 2..ROUNDS repeat no backup, pg_dump -Fc, the defaults and BACKEND_NICE=0
SHM=${SHM:-/dev/shm}               # tmpfs for the "no disk writes" control; empty skips it

SETTLE_LAG_MS=${SETTLE_LAG_MS:-10}
LOCK_SECS=${LOCK_SECS:-20}
LOCK_QPS=${LOCK_QPS:-50}
OUT=${OUT:-$BENCH_DIR/results-nostall.md}
DB_A=nostall_a DB_B=nostall_b
DISK=${DISK:-$(lsblk -ndo NAME,TYPE | awk '$2 == "disk" && $1 !~ /^(loop|zram|ram)/ {print $1; exit}')}

# Only the settings each scenario names apply.
for v in $(compgen -v PGBACKUPS_ || true); do unset "$v"; done

BG=()
stop_bg() { local p; for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_bg; [ -n "${SHM_STORE:-}" ] && rm -rf "$SHM_STORE"; cleanup' EXIT

say() { echo "[$(date +%T)] $*" >&2; }
now() { date +%s.%N; }
sql() { "$PGBIN/psql" -Atq -d "$(db_url "$1")" -c "$2"; }
# snap: host CPU jiffies (busy, idle+iowait, steal) and DISK's sectors read
# and written, to attribute a window's CPU and IO.
snap() {
	echo "$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6, $9}' /proc/stat) $(awk '{print $3, $7}' "/sys/block/$DISK/stat" 2>/dev/null || echo 0 0)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
say "load average before: $LOAD_BEFORE; work dir $WORK"

start_postgres
build_pgbackups
say "creating $DB_B (~$DB_MB MB) and $DB_A (pgbench scale $SCALE)"
make_db "$DB_B" "$DB_MB"
make_pgbench_db "$DB_A" "$SCALE"
sql "$DB_B" "CHECKPOINT"
B_SIZE=$(db_size "$DB_B") A_SIZE=$(db_size "$DB_A")
# Warm the cache the same way for every scenario: B is read once up front.
"$PGBIN/pg_dump" -Fc -Z0 --no-sync -f /dev/null -d "$(db_url "$DB_B")"

if [ -z "$RATE" ]; then
	say "measuring capacity: pgbench -c $CLIENTS -j 2 -T 20 (unthrottled)"
	CAPACITY=$("$PGBIN/pgbench" -c "$CLIENTS" -j 2 -T 20 "$DB_A" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	RATE=$(awk -v c="$CAPACITY" -v f="$RATE_FRAC" 'BEGIN{printf "%d", c * f}')
else
	CAPACITY=unmeasured
fi
say "capacity $CAPACITY tps; workload rate $RATE tps"
sql "$DB_A" "CHECKPOINT"

PGB_A_CMD="pgbench -R $RATE -c $CLIENTS -j 2 -T 3600 -P 1 -l $DB_A"
"$PGBIN/pgbench" -R "$RATE" -c "$CLIENTS" -j 2 -T 3600 -P 1 -l --log-prefix="$WORK/pgblog_a" "$DB_A" \
	>"$WORK/a.summary" 2>"$WORK/a.progress" &
PGB_A=$!
BG+=("$PGB_A")
# Dirty + Writeback page cache (KiB) every second: where the backup file's
# writes wait to reach the disk.
while sleep 1; do echo "$(now) $(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo)"; done > "$WORK/dirty.log" &
BG+=($!)
sleep 20   # warm-up: connections, caches, autovacuum's first look

: > "$WORK/windows"
: > "$WORK/lock"
# settle: CHECKPOINT, then wait until pgbench A's schedule lag has been under
# SETTLE_LAG_MS for 5 progress reports in a row (at most SETTLE_MAX s).
# SETTLED is 1 if it did; a window that starts unsettled is flagged.
SETTLE_MAX=${SETTLE_MAX:-120}
SETTLED=1
settle() {
	sleep 5   # let the last window's transactions finish before the CHECKPOINT
	sql postgres CHECKPOINT
	sleep 3
	if on_schedule "$WORK/a.progress" "$SETTLE_LAG_MS" "$SETTLE_MAX" "$PGB_A"; then SETTLED=1; return 0; fi
	SETTLED=0
	say "warning: pgbench lag did not settle under $SETTLE_LAG_MS ms in $SETTLE_MAX s"
}

# record LABEL SETTING T0 T1 RC LOG STORED DUMP SNAP0 SNAP1 (+ SETTLED ROUND)
ROUND=1
record() { local IFS='|'; echo "$*|$SETTLED|$ROUND" >> "$WORK/windows"; }

baseline() {
	local secs=${1:-$BASE_SECS} s0 t0 t1
	settle
	say "no backup: $secs s window"
	s0=$(snap) t0=$(now)
	sleep "$secs"
	t1=$(now)
	record "no backup" "${secs} s window" "$t0" "$t1" 0 - - - "$s0" "$(snap)"
}

# backup LABEL SETTING CMD...: one backup of B inside a measurement window.
DUMP_BYTES=
backup() {
	local label=$1 setting=$2 rc=0 s0 t0 t1 s1 stored=- dumpb=- log
	shift 2
	rm -rf "$WORK/local" "$WORK/fc.dump"
	settle
	say "$label ($setting)"
	log="$WORK/log-r$ROUND-$(echo "$label $setting" | tr -c 'a-zA-Z0-9\n' '_')"   # per round: rounds repeat scenarios
	s0=$(snap) t0=$(now)
	"$@" >"$log.out" 2>"$log.err" || rc=$?
	t1=$(now) s1=$(snap)
	if [ -f "$WORK/fc.dump" ]; then
		stored=$(stat -c %s "$WORK/fc.dump")
	elif [ -d "$WORK/local" ] || [ -d "${SHM_STORE:-$WORK/local}" ]; then
		stored=$( (find "$WORK/local" ${SHM_STORE:+"$SHM_STORE"} -name '*.dump.zst' -printf '%s\n' 2>/dev/null || true) | awk '{s+=$1} END{print s+0}')
		dumpb=$( (find "$WORK/local" ${SHM_STORE:+"$SHM_STORE"} -name '*.manifest.json' -exec python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("dump_bytes", "-"))' {} \; 2>/dev/null || true) | head -1)
		[ -n "$dumpb" ] || dumpb=-
		[ "$rc" = 0 ] && [ "$dumpb" != - ] && DUMP_BYTES=$dumpb
	fi
	[ "$rc" = 0 ] || { say "$label exited $rc:"; tail -3 "$log.err" >&2; }
	record "$label" "$setting" "$t0" "$t1" "$rc" "$log.err" "$stored" "$dumpb" "$s0" "$s1"
}

CAPTURE_ENV=(PGBACKUPS_DATABASE_URL="$(db_url "$DB_B")" PGBACKUPS_STORAGE_URL="$WORK/local"
	PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json)
capture() { env "${CAPTURE_ENV[@]}" "$@" "$PGBACKUPS" capture; }

baseline
plain_dump() { backup "pg_dump -Fc -f file" "gzip -6 inside pg_dump, normal priority" "$PGBIN/pg_dump" -Fc -f "$WORK/fc.dump" -d "$(db_url "$DB_B")"; }
defaults() { backup "pgbackups capture" "defaults: NICE=10 BACKEND_NICE=10 IONICE_CLASS=idle MAX_RATE=auto" capture PGBACKUPS_LOG_LEVEL=debug; }
# The defaults with the server backend left at normal priority: what
# BACKEND_NICE adds (the backend is lowered only where pgbackups may renice
# it: this script runs pgbackups as root, the server as postgres).
backend_normal() { backup "pgbackups capture" "BACKEND_NICE=0 (+ other defaults)" capture PGBACKUPS_BACKEND_NICE=0 PGBACKUPS_LOG_LEVEL=debug; }
plain_dump
backup "pgbackups capture" "unthrottled: NICE=0 BACKEND_NICE=0 IONICE_CLASS=none MAX_RATE=off" capture PGBACKUPS_NICE=0 PGBACKUPS_BACKEND_NICE=0 PGBACKUPS_IONICE_CLASS=none PGBACKUPS_MAX_RATE=off
defaults
backend_normal
backup "pgbackups capture" "MAX_RATE=off (+ default priority)" capture PGBACKUPS_MAX_RATE=off
if [ -n "$SHM" ] && [ "$(stat -f -c %T "$SHM" 2>/dev/null)" = tmpfs ]; then
	# Control: the same capture storing into tmpfs, so the backup writes
	# nothing to the disk PostgreSQL's WAL is on (like a remote S3).
	SHM_STORE=$(mktemp -d "$SHM/pgbackups-nostall-XXXXXX")
	backup "pgbackups capture" "MAX_RATE=off, stored on tmpfs (control: no disk writes)" capture PGBACKUPS_MAX_RATE=off PGBACKUPS_STORAGE_URL="$SHM_STORE"
	rm -rf "$SHM_STORE"
	SHM_STORE=
fi
baseline
for r in $MAX_RATES; do
	backup "pgbackups capture" "MAX_RATE=$r (+ default priority)" capture PGBACKUPS_MAX_RATE="$r"
done
baseline "$BASE_LONG_SECS"
for ROUND in $(seq 2 "$ROUNDS"); do
	say "round $ROUND of $ROUNDS"
	baseline
	plain_dump
	defaults
	backend_normal
done
sleep 3
kill "$PGB_A" 2>/dev/null || true   # SIGTERM: a background job of a script ignores SIGINT
wait "$PGB_A" 2>/dev/null || true
rm -rf "$WORK/local" "$WORK/fc.dump"

# Lock-queue scenario: A's workload is stopped; B gets point SELECTs on
# events at LOCK_QPS, a capture limited to ~LOCK_SECS, and an ALTER TABLE
# arriving 5 s into the dump.
[ -n "$DUMP_BYTES" ] || DUMP_BYTES=$((DB_MB * 1024 * 1024))
LOCK_RATE="$(( (DUMP_BYTES + LOCK_SECS * 1048576 - 1) / (LOCK_SECS * 1048576) ))MiB"
MAXID=$(sql "$DB_B" "SELECT max(id) FROM events")
printf '\\set id random(1, %s)\nSELECT id, kind, amount FROM events WHERE id = :id;\n' "$MAXID" > "$WORK/select.sql"
LOCK_PGB_CMD="pgbench -n -R $LOCK_QPS -c 8 -j 1 -T $((LOCK_SECS + 20)) -f select.sql -l $DB_B"
lock_scenario() {
	local label=$1 rc=0 tc0 tc1 ta0 pgb cap alter
	shift
	rm -rf "$WORK/local"
	say "lock queue: $label"
	"$PGBIN/pgbench" -n -R "$LOCK_QPS" -c 8 -j 1 -T $((LOCK_SECS + 20)) -f "$WORK/select.sql" -l \
		--log-prefix="$WORK/pgblog_lock_$label" "$DB_B" >"$WORK/lock-$label.pgbench" 2>&1 &
	pgb=$!
	BG+=("$pgb")
	sleep 5
	tc0=$(now)
	capture PGBACKUPS_MAX_RATE="$LOCK_RATE" "$@" >"$WORK/lock-$label.out" 2>"$WORK/lock-$label.err" &
	cap=$!
	BG+=("$cap")
	sleep 5
	ta0=$(now)
	( sql "$DB_B" "ALTER TABLE events ADD COLUMN x int" >/dev/null 2>"$WORK/lock-$label.alter.err"; now > "$WORK/lock-$label.alter.end" ) &
	alter=$!
	wait "$cap" || rc=$?
	tc1=$(now)
	wait "$alter" || true
	wait "$pgb" || true
	sql "$DB_B" "ALTER TABLE events DROP COLUMN IF EXISTS x"
	local env="$*" IFS='|'
	echo "$label|$env|$tc0|$tc1|$rc|$ta0|$(cat "$WORK/lock-$label.alter.end")|$WORK/lock-$label.err|$WORK/pgblog_lock_$label" >> "$WORK/lock"
}
lock_scenario warn PGBACKUPS_ON_BLOCKING=warn
lock_scenario abort PGBACKUPS_ON_BLOCKING=abort PGBACKUPS_BLOCKING_THRESHOLD=2s

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - START ))
say "load average after: $LOAD_AFTER; ${ELAPSED}s"

cat > "$WORK/meta" <<META
machine=$(machine_line)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo +changes)
scale=$SCALE
sched=$(io_schedulers)
load_before=$LOAD_BEFORE
load_after=$LOAD_AFTER
elapsed=$ELAPSED
command=SCALE=$SCALE DB_MB=$DB_MB CLIENTS=$CLIENTS RATE_FRAC=$RATE_FRAC ROUNDS=$ROUNDS BASE_SECS=$BASE_SECS BASE_LONG_SECS=$BASE_LONG_SECS MAX_RATES="$MAX_RATES" bench/nostall.sh
pgbench_a=$PGB_A_CMD
pgbench_lock=$LOCK_PGB_CMD
capacity=$CAPACITY
rate=$RATE
clients=$CLIENTS
a_size=$A_SIZE
b_size=$B_SIZE
dump_bytes=$DUMP_BYTES
lock_rate=$LOCK_RATE
lock_qps=$LOCK_QPS
lock_secs=$LOCK_SECS
disk=$DISK
META

python3 - "$WORK" "$BENCH_DIR" > "$WORK/results.md" <<'PY'
import bisect, json, math, re, sys
from datetime import datetime

sys.path.insert(0, sys.argv[2])
from pgblog import load, pct

work = sys.argv[1]
meta = dict(l.rstrip("\n").split("=", 1) for l in open(f"{work}/meta") if "=" in l)
MiB = 1 << 20

def ts(s):
    """RFC 3339 from slog (nanoseconds, Z or offset) to epoch seconds."""
    s = re.sub(r"(\.\d{6})\d+", r"\1", s).replace("Z", "+00:00")
    return datetime.fromisoformat(s).timestamp()

def logs(path):
    out = []
    try:
        for line in open(path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    except OSError:
        pass
    return out

def human(n):
    try:
        n = float(n)
    except ValueError:
        return "-"
    for u in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or u == "GiB":
            return f"{n:.0f} {u}" if u in ("B", "KiB") else f"{n:.1f} {u}"
        n /= 1024

txs = load(f"{work}/pgblog_a")
starts = [t[0] for t in txs]
ends = sorted(t[1] for t in txs)

# Dirty + Writeback page cache, sampled every second.
dirty = []
for line in open(f"{work}/dirty.log"):
    p = line.split()
    if len(p) == 2:
        dirty.append((float(p[0]), int(p[1]) / 1024))

rows = []
for line in open(f"{work}/windows"):
    label, setting, t0, t1, rc, log, stored, dumpb, s0, s1, settled, rnd = line.rstrip("\n").split("|")
    t0, t1, rc = float(t0), float(t1), int(rc)
    i, j, k = (bisect.bisect_left(starts, x) for x in (t0, t1, t1 - 1))
    lats = sorted(t[2] for t in txs[i:j])
    early = sorted(t[2] for t in txs[i:k])  # all but the last second
    done = bisect.bisect_left(ends, t1) - bisect.bisect_left(ends, t0)
    a, b = [float(x) for x in s0.split()], [float(x) for x in s1.split()]
    busy, idle, steal = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    tot = busy + idle + steal
    r = dict(label=label, round=int(rnd), unsettled=settled != "1", setting=setting, t0=t0, dur=t1 - t0, rc=rc, log=log,
             stored=stored, dumpb=dumpb, n=len(lats), tps=done / (t1 - t0),
             p50=pct(lats, .5) * 1e3, p99=pct(lats, .99) * 1e3, max=(lats[-1] * 1e3 if lats else float("nan")),
             p99early=pct(early, .99) * 1e3,
             dirty=max((d for t, d in dirty if t0 <= t <= t1), default=float("nan")),
             cpu=100 * busy / tot if tot else float("nan"), steal=100 * steal / tot if tot else 0,
             rd=(b[3] - a[3]) * 512 / MiB, wr=(b[4] - a[4]) * 512 / MiB)
    rows.append(r)

# Rounds 2.. repeat the target's scenarios; the main table is round 1.
allrows, rows = rows, [r for r in rows if r["round"] == 1]
base = [r for r in rows if r["label"] == "no backup"]
BASE_MIN = min(r["dur"] for r in base)
ref = sorted(r["p99"] for r in base)[(len(base) - 1) // 2]  # median (lower) of the no-backup windows
fc = next((r for r in rows if r["label"].startswith("pg_dump")), None)
for r in rows:
    r["ratio"] = r["p99"] / ref
    r["backup"] = r["label"] != "no backup"
    if r["backup"]:
        r["slower"] = r["dur"] / fc["dur"] if fc else float("nan")
        r["ok_p99"] = r["ratio"] <= 1.3 and r["rc"] == 0
        r["ok_dur"] = fc is not None and r["dur"] <= fc["dur"] and r["rc"] == 0

def num(x, spec):
    return "-" if math.isnan(x) else format(x, spec)

def short(r):
    if r["label"].startswith("pg_dump"):
        return "plain pg_dump -Fc"
    s = r["setting"]
    return s.split(":")[0] if s.startswith(("unthrottled", "defaults:")) else s.split(" (")[0]

stored_pgb = next((r["stored"] for r in rows if r["backup"] and not r["label"].startswith("pg_dump") and r["stored"] != "-"), "-")
P = print
P("## No-stall benchmark (issue 5)")
P()
P(f"- Machine: {meta['machine']}; IO scheduler {meta['sched']}; "
  f"load average {meta['load_before']} before, {meta['load_after']} after "
  f"(other jobs may share the machine; the no-backup windows at the start, middle and end show the noise).")
P(f"- Command: `{meta['command']}` at commit {meta.get('commit', '?')} ({int(meta['elapsed']) // 60} min {int(meta['elapsed']) % 60} s). "
  f"Storage: pgbackups' local directory backend on the same disk as PostgreSQL, "
  f"except the tmpfs control row; plain pg_dump writes its file there too (and fsyncs it).")
P(f"- Database A: pgbench scale {meta['scale']} ({human(meta['a_size'])}); unthrottled capacity "
  f"{round(float(meta['capacity'])) if meta['capacity'].replace('.', '', 1).isdigit() else meta['capacity']} tps at -c {meta['clients']}; workload `{meta['pgbench_a']}` "
  f"(one pgbench for every window; before each: 5 s, CHECKPOINT, and pgbench back on schedule).")
P(f"- Database B: {human(meta['b_size'])} on disk (make_db), dump {human(meta['dump_bytes'])} uncompressed, "
  f"stored {human(fc['stored']) if fc else '-'} by pg_dump -Fc (gzip 6), {human(stored_pgb)} by pgbackups (zstd 1); "
  f"B fits in the page cache (RAM >> B) and was read once before the first window.")
P("- Latency: pgbench -R latency (from the scheduled start, so time queued behind a slow database counts) "
  "of the transactions scheduled inside the backup's wall time; tps: those completed in it. "
  "\"w/o last 1 s\" leaves out the backup's final second (where the stored file's final fsync lands). "
  f"\"vs no backup\" divides by the median p99 of the no-backup windows ({ref:.2f} ms). "
  "Target: p99 <= 1.3x and backup no slower than plain pg_dump -Fc. CPU is the whole host's; "
  f"disk is {meta['disk']}'s reads/writes in the window; dirty is the peak of Dirty+Writeback in /proc/meminfo.")
P()
P("| Scenario | Setting | Backup (s) | vs pg_dump -Fc | Dump rate | tps | p50 (ms) | p99 (ms) | p99 w/o last 1 s | max (ms) | p99 vs no backup | Target met | Host CPU | Disk R / W (MiB) | Dirty peak (MiB) |")
P("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["backup"]:
        dur = f"{r['dur']:.1f}" + ("" if r["rc"] == 0 else (" (stopped at timeout)" if r["rc"] == 124 else f" (exit {r['rc']})"))
        vs = f"{r['slower']:.2f}x"
        rate = f"{float(r['dumpb']) / r['dur'] / MiB:.0f} MiB/s" if r["dumpb"] not in ("-", "") else "-"
        if r["label"].startswith("pg_dump"):
            rate = f"{int(meta['dump_bytes']) / r['dur'] / MiB:.0f} MiB/s*"
        tgt = "yes" if r["ok_p99"] and r["ok_dur"] else ("p99 only" if r["ok_p99"] else ("speed only" if r["ok_dur"] else "no"))
    else:
        dur = vs = rate = tgt = "-"
    P(f"| {r['label']}{' †' if r['unsettled'] else ''} | {r['setting']} | {dur} | {vs} | {rate} | {r['tps']:.0f} | {r['p50']:.2f} | "
      f"{r['p99']:.1f} | {num(r['p99early'], '.1f')} | {r['max']:.0f} | {r['ratio']:.2f}x | {tgt} | {r['cpu']:.0f}% | {r['rd']:.0f} / {r['wr']:.0f} | {num(r['dirty'], '.0f')} |")
P()
P("\\* pg_dump -Fc's rate is pgbackups' uncompressed dump size over its wall time, for comparison."
  + (" † the window started before pgbench had caught up with its schedule (lag >= SETTLE_LAG_MS)." if any(r["unsettled"] for r in rows) else ""))
P()

# MAX_RATE=auto's limit as it moved.
auto = next((r for r in rows if "auto" in r["setting"]), None)
auto_note = ""
if auto:
    ch = [e for e in logs(auto["log"]) if e.get("msg") == "dump rate limit changed"]
    if ch:
        floor_t = next((ts(e["time"]) - auto["t0"] for e in ch if e.get("limit_bytes_per_second") == 4 << 20), None)
        act = [float(e.get("active_sessions", 0)) for e in ch]
        path = " -> ".join(["8.0 MiB/s"] + [e["to"] for e in ch[:6]]) + (" ..." if len(ch) > 6 else "")
        bl = [e for e in logs(auto["log"]) if str(e.get("msg", "")).startswith("application load measured")]
        lims = [int(e.get("limit_bytes_per_second", 0)) for e in ch]
        span = ""
        if any(x > 0 for x in lims):
            span = (f"limit between {min(x for x in lims if x > 0) / MiB:.0f} and {max(lims) / MiB:.0f} MiB/s"
                    + (" or unlimited" if 0 in lims else "") + "; ")
        baseline = ""
        if bl:
            baseline = (f"baseline {', '.join(format(float(e['active_sessions']), '.1f') for e in bl)} active sessions "
                        "(measured at the floor rate for the first 4 s); ")
        auto_note = (span + baseline + f"{len(ch)} limit changes ({path}); "
                     + (f"at the 4 MiB/s floor {floor_t:.0f} s after start; " if floor_t is not None else "")
                     + f"mean active sessions when it changed: {min(act):.1f}-{max(act):.1f}")
    else:
        auto_note = "the limit never changed from its 8 MiB/s start"
    lowered = [e for e in logs(auto["log"]) if e.get("msg") == "lowered the dump's server backend"]
    normal = [e for e in logs(auto["log"]) if e.get("msg") == "the dump's server backend runs at its normal priority"]
    auto_note += ("; server backend lowered to nice " + str(lowered[0].get("nice")) if lowered else
                  "; server backend NOT lowered (" + (normal[0].get("reason", "?") if normal else "no log line") + ")")

def med(xs):
    """The median of xs (nan when empty)."""
    xs = sorted(xs)
    n = len(xs)
    return (xs[(n - 1) // 2] + xs[n // 2]) / 2 if xs else float("nan")

# The target over all rounds: each round's plain pg_dump -Fc and defaults
# judged against the no-backup window that ran just before them.
nrounds = max(r["round"] for r in allrows)
rounds = []
if nrounds > 1:
    for k in range(1, nrounds + 1):
        rr = [r for r in allrows if r["round"] == k]
        nb = next((r for r in rr if r["label"] == "no backup"), None)
        pf = next((r for r in rr if r["label"].startswith("pg_dump")), None)
        df = next((r for r in rr if r["setting"].startswith("defaults:")), None)
        bn = next((r for r in rr if r["setting"].startswith("BACKEND_NICE=0")), None)
        if nb and pf and df:
            rounds.append(dict(k=k, nb=nb, pf=pf, df=df, ratio=df["p99"] / nb["p99"], pfratio=pf["p99"] / nb["p99"],
                               speed=df["dur"] / pf["dur"], ok=df["rc"] == 0 and pf["rc"] == 0,
                               bn=bn, bnratio=bn["p99"] / nb["p99"] if bn else float("nan")))
    allnb = [r["p99"] for r in allrows if r["label"] == "no backup"]
    P(f"Target over {len(rounds)} rounds (round 1 is the table above; rounds 2-{nrounds} repeat no backup, pg_dump -Fc, the defaults and BACKEND_NICE=0 after it). "
      "Each round's backups are judged against the no-backup window just before them; "
      f"the median p99 of all {len(allnb)} no-backup windows of the run is {med(allnb):.1f} ms (range {min(allnb):.1f}-{max(allnb):.1f}).")
    P()
    P("| Round | No backup p99 (ms) | pg_dump -Fc (s) | its p99 (ms) | its p99 vs no backup | defaults (s) | their p99 (ms) | their p99 vs no backup | defaults time vs pg_dump -Fc | BACKEND_NICE=0 (s) | its p99 vs no backup |")
    P("|---|---|---|---|---|---|---|---|---|---|---|")
    bnd = lambda x: "-" if x["bn"] is None else f"{x['bn']['dur']:.1f}"
    for x in rounds:
        P(f"| {x['k']} | {x['nb']['p99']:.1f} | {x['pf']['dur']:.1f} | {x['pf']['p99']:.1f} | {x['pfratio']:.2f}x | "
          f"{x['df']['dur']:.1f}{'' if x['df']['rc'] == 0 else ' (exit ' + str(x['df']['rc']) + ')'} | {x['df']['p99']:.1f} | {x['ratio']:.2f}x | {x['speed']:.2f}x | "
          f"{bnd(x)} | {num(x['bnratio'], '.2f')}x |")
    if rounds:
        bns = [x for x in rounds if x["bn"] is not None]
        P(f"| median | {med([x['nb']['p99'] for x in rounds]):.1f} | {med([x['pf']['dur'] for x in rounds]):.1f} | "
          f"{med([x['pf']['p99'] for x in rounds]):.1f} | {med([x['pfratio'] for x in rounds]):.2f}x | {med([x['df']['dur'] for x in rounds]):.1f} | "
          f"{med([x['df']['p99'] for x in rounds]):.1f} | {med([x['ratio'] for x in rounds]):.2f}x | {med([x['speed'] for x in rounds]):.2f}x | "
          f"{num(med([x['bn']['dur'] for x in bns]), '.1f')} | {num(med([x['bnratio'] for x in bns]), '.2f')}x |")
    P()

# Lock-queue scenario.
lock = []
for line in open(f"{work}/lock"):
    label, env, tc0, tc1, rc, ta0, ta1, err, prefix = line.rstrip("\n").split("|")
    tc0, tc1, ta0, ta1, rc = float(tc0), float(tc1), float(ta0), float(ta1), int(rc)
    lt = load(prefix)
    lats = sorted(t[2] for t in lt)
    ev = logs(err)
    warn = next((ts(e["time"]) for e in ev if "blocks a session" in e.get("msg", "")), None)
    abort = next((ts(e["time"]) for e in ev if "aborting it" in e.get("msg", "")), None)
    errmsg = next((e.get("err") or e.get("error") for e in reversed(ev) if e.get("level") == "ERROR"), None)
    if errmsg is None:
        tail = [l for l in open(err).read().splitlines() if l.strip()]
        errmsg = tail[-1] if tail else ""
    lock.append(dict(label=label, env=env, rc=rc, dump=tc1 - tc0, after_alter=tc1 - ta0, alter_wait=ta1 - ta0,
                     n=len(lats), p50=pct(lats, .5) * 1e3, p99=pct(lats, .99) * 1e3, max=lats[-1] * 1e3 if lats else float("nan"),
                     over1=sum(1 for x in lats if x > 1), warn=None if warn is None else warn - ta0,
                     abort=None if abort is None else abort - ta0, err=errmsg))

P(f"Lock queue: `ALTER TABLE events ADD COLUMN x int` (no lock_timeout, like most migrations) arrives 5 s into a capture of B "
  f"limited to MAX_RATE={meta['lock_rate']} (~{meta['lock_secs']} s) while `{meta['pgbench_lock']}` runs point SELECTs on events "
  f"(A's workload stopped). Latency is over all {lock[0]['n'] if lock else 0} queries of the run, from their scheduled start.")
P()
P("| Watchdog | Dump | ALTER waited (s) | Queries | p50 (ms) | p99 (ms) | max (ms) | Queries > 1 s |")
P("|---|---|---|---|---|---|---|---|")
for l in lock:
    if l["rc"] == 0:
        dump = f"completed in {l['dump']:.1f} s" + (f"; warned {l['warn']:.1f} s after the ALTER arrived" if l["warn"] is not None else "")
    else:
        dump = (f"aborted {l['abort']:.1f} s after the ALTER arrived" if l["abort"] is not None else f"failed (exit {l['rc']})") + \
               f", capture exited {l['after_alter']:.1f} s after it ({l['dump']:.1f} s in), exit {l['rc']}"
    P(f"| {l['env'].replace('PGBACKUPS_', '')} | {dump} | {l['alter_wait']:.1f} | {l['n']} | {l['p50']:.2f} | {l['p99']:.0f} | {l['max']:.0f} | {l['over1']} |")
P()

# Conclusions, from the numbers above.
P("Conclusions:")
d = next((r for r in rows if r["setting"].startswith("defaults:")), None)
u = next((r for r in rows if r["setting"].startswith("unthrottled")), None)
tm = next((r for r in rows if "tmpfs" in r["setting"]), None)
spread = f"{min(r['p99'] for r in base):.1f}-{max(r['p99'] for r in base):.1f} ms"
def rate_of(r):
    return float(r["dumpb"]) / r["dur"] / MiB if r["dumpb"] not in ("-", "") else float("nan")
if rounds:
    mr, ms = med([x["ratio"] for x in rounds]), med([x["speed"] for x in rounds])
    met = sum(1 for x in rounds if x["ok"] and x["ratio"] <= 1.3 and x["speed"] <= 1)
    verdict = "meet" if mr <= 1.3 and ms <= 1 and all(x["ok"] for x in rounds) else "do NOT meet"
    P(f"- Over {len(rounds)} rounds the defaults {verdict} the target: median p99 {mr:.2f}x the round's no-backup p99 "
      f"(per round: {', '.join(format(x['ratio'], '.2f') + 'x' for x in rounds)}), median time {ms:.2f}x plain pg_dump -Fc's "
      f"(per round: {', '.join(format(x['speed'], '.2f') + 'x' for x in rounds)}); both halves held in {met} of {len(rounds)} rounds. "
      f"Plain pg_dump -Fc itself: median p99 {med([x['pfratio'] for x in rounds]):.2f}x.")
if d and fc:
    verdict = "meet" if d["ok_p99"] and d["ok_dur"] else "do NOT meet"
    P(f"- {'In round 1, the' if rounds else 'The'} defaults {verdict} the target on this machine: p99 {d['p99']:.0f} ms is {d['ratio']:.1f}x the no-backup p99 "
      f"({ref:.1f} ms, windows {spread}; 1.3x = {1.3 * ref:.1f} ms), {d['p99early']:.0f} ms without the final second; "
      f"the backup itself took {d['dur']:.1f} s vs {fc['dur']:.1f} s for plain pg_dump -Fc ({d['slower']:.2f}x), "
      + ("so the speed half holds." if d["ok_dur"] else "so the speed half fails too."))
off = next((r for r in rows if r["setting"].startswith("MAX_RATE=off (")), None)
if fc and u and off:
    line = (f"- Priority: pgbackups unthrottled (nice 0, no IO class) p50 {u['p50']:.0f} ms, p99 {u['p99']:.0f} ms ({u['ratio']:.1f}x); "
            f"with the default priority (nice 10, idle IO) and no rate limit p50 {off['p50']:.0f} ms, p99 {off['p99']:.0f} ms ({off['ratio']:.1f}x)")
    if off["p99"] > 1.5 * off["p99early"]:
        line += ("; the backup's last second, where the local backend fsyncs the whole stored file "
                 f"(dirty page cache peaked at {off['dirty']:.0f} MiB before it), alone sets the p99: commits wait behind that flush")
    if tm:
        line += (f"; storing into tmpfs instead (no disk writes), the same capture gives p50 {tm['p50']:.0f} ms, "
                 f"p99 {tm['p99']:.0f} ms ({tm['ratio']:.1f}x)")
        if tm["p99"] < 0.6 * off["p99"]:
            line += ", so writing the backup file to the WAL's disk is a large part of the damage"
        elif tm["p99"] > 0.75 * off["p99"]:
            line += ", so what remains is CPU competition (the server's COPY backend, pg_dump, zstd), not the stored file's writes"
    line += f". Plain pg_dump -Fc: {fc['ratio']:.1f}x over {fc['dur']:.0f} s (its gzip holds it to ~{int(meta['dump_bytes']) / fc['dur'] / MiB:.0f} MiB/s)."
    P(line)
caps = [r for r in rows if r["setting"].startswith("MAX_RATE=") and "auto" not in r["setting"] and "tmpfs" not in r["setting"]]
if caps:
    natural = rate_of(off) if off else float("nan")
    P("- MAX_RATE (default priority otherwise): " + "; ".join(
        f"{short(r).split('=')[1]}: {r['dur']:.0f} s at {rate_of(r):.0f} MiB/s, p99 {r['ratio']:.1f}x ({r['p99early']:.0f} ms w/o last s)" for r in caps)
      + f". Uncapped, the dump ran at {natural:.0f} MiB/s here (CPU-bound), so caps above that change nothing. "
      + ("Settings meeting both halves of the target: " + ", ".join(short(r) for r in rows if r.get("ok_p99") and r.get("ok_dur")) + "."
         if any(r.get("ok_p99") and r.get("ok_dur") for r in rows) else
         "No setting met both halves; the best p99 among backups no slower than pg_dump -Fc: "
         + (lambda c: f"{short(c)} ({c['ratio']:.1f}x, {c['dur']:.0f} s)" if c else "none")(
             min((r for r in rows if r["backup"] and r.get("ok_dur")), key=lambda r: r["ratio"], default=None))
         + (lambda c: f"; the best p99 of all: {short(c)} ({c['ratio']:.1f}x, {c['slower']:.2f}x pg_dump -Fc's time).")(
             min((r for r in rows if r["backup"]), key=lambda r: r["ratio"]))))
if auto:
    # The tail grows with the window (background writeback stalls come
    # every half minute or so): also compare with the longest no-backup window.
    lb = max(base, key=lambda r: r["dur"])
    P(f"- MAX_RATE=auto (the default): {auto['dur']:.0f} s ({auto['slower']:.2f}x pg_dump -Fc), p99 {auto['ratio']:.1f}x "
      f"({auto['p99early']:.0f} ms w/o last s)"
      + (f", {auto['p99'] / lb['p99']:.1f}x the {lb['dur']:.0f} s no-backup window's {lb['p99']:.1f} ms" if lb["dur"] > 2 * BASE_MIN else "")
      + f"; {auto_note}.")
if len(lock) == 2:
    w, a = lock
    P(f"- Lock queue: with warn (default), the ALTER waited {w['alter_wait']:.1f} s for the dump and every SELECT on the table queued "
      f"behind it (max {w['max'] / 1e3:.1f} s, {w['over1']} of {w['n']} queries over 1 s)"
      + (f"; the watchdog warned {w['warn']:.1f} s after the ALTER arrived" if w["warn"] is not None else "")
      + ". With abort at 2 s the dump was "
      + (f"aborted {a['abort']:.1f} s after the ALTER arrived" if a["abort"] is not None else f"not aborted (exit {a['rc']})")
      + f", the ALTER waited {a['alter_wait']:.1f} s, and queries at most {a['max'] / 1e3:.1f} s ({a['over1']} over 1 s); "
      f"that backup is lost and must be retried.")
rd = sum(r["rd"] for r in rows if r["backup"])
lb = max(base, key=lambda r: r["dur"])
brate = sum(r["rd"] for r in base) / sum(r["dur"] for r in base) * 60
P(f"- IO: {meta['sched']} (it has I/O priority classes; BFQ is the other scheduler that honours them). The backup windows read "
  f"{rd:.0f} MiB from disk in all ({brate:.0f} MiB/min without a backup): B came mostly from the page cache, so what IO "
  f"priority can act on is the stored file's writes. The disk stalls commits on writeback even without a backup: "
  f"the {lb['dur']:.0f} s no-backup window has p99 {lb['p99']:.1f} ms, max {lb['max']:.0f} ms. "
  f"Steal time: {max(r['steal'] for r in rows):.0f}% at most in a window.")
PY

cp "$WORK/results.md" "$OUT"
cat "$WORK/results.md"
