#!/usr/bin/env bash
# Peak dirty page cache (Dirty+Writeback in /proc/meminfo) while
# `pgbackups capture` writes to a local directory: what the file store's
# paced writeback (storage/file/writeback.go) is for.
# Usage: bench/writeback.sh [MB] [BINARY...]   (default: 700, a fresh build)
source "$(dirname "$0")/lib.sh"
mb=${1:-700}; shift || true
build_pgbackups
bins=("${@:-$PGBACKUPS}")
start_postgres
make_db wb "$mb"
url=$(db_url wb)
for bin in "${bins[@]}"; do
	rm -rf "$WORK/l" "$WORK/done"; peak=0
	( env PGBACKUPS_DATABASE_URL="$url" PGBACKUPS_STORAGE_URL="$WORK/l" PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json "$bin" capture >/dev/null 2>&1; touch "$WORK/done" ) &
	while [ ! -f "$WORK/done" ]; do
		d=$(awk '/^(Dirty|Writeback):/{s+=$2} END{print s}' /proc/meminfo)
		[ "$d" -gt "$peak" ] && peak=$d
		sleep 0.2
	done
	echo "$bin: peak Dirty+Writeback $((peak / 1024)) MiB, stored $(du -sm "$WORK/l" | cut -f1) MiB"
done
