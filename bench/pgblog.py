"""pgbench per-transaction logs (pgbench -l), shared by the bench scripts."""
import glob
import math


def load(prefix):
    """Transactions of the pgbench -l files PREFIX.*, as (scheduled start,
    end, latency in s) sorted by start. With -R, latency counts from the
    scheduled start, so time queued behind a slow database is included.
    Lines: client txno latency_us script epoch us [lag_us]."""
    txs = []
    for f in glob.glob(glob.escape(prefix) + ".*"):
        for line in open(f):
            p = line.split()
            if len(p) < 6 or not p[2].isdigit():
                continue
            lat = int(p[2]) / 1e6
            end = int(p[4]) + int(p[5]) / 1e6
            txs.append((end - lat, end, lat))
    txs.sort()
    return txs


def pct(xs, q):
    """The nearest-rank q-quantile of the sorted list xs (nan when empty)."""
    return xs[max(0, math.ceil(q * len(xs)) - 1)] if xs else float("nan")
