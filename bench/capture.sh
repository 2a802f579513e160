#!/usr/bin/env bash
# Capture benchmark (issue 2): in one run, on one machine, side by side:
#   pg_dump -Fc -Z0 > /dev/null   the floor: what pg_dump costs at all
#   pg_dump -Fc > file            what most tools do (gzip level 6 inside pg_dump)
#   pg_dump | gzip > file         the classic cron script (plain SQL)
#   pgbackups capture             to the local directory and to a local S3 server
# at SIZES (MB, default "512 1024"), printing a markdown table of wall time,
# peak RSS of the largest process, and stored bytes.
# Usage: bench/capture.sh [SIZES...]   e.g. bench/capture.sh 1024 2048
source "$(dirname "$0")/lib.sh"
SIZES=${*:-512 1024}
LEVELS=${LEVELS:-1 3 7}

start_postgres
start_s3
build_pgbackups
PGDUMP=$PGBIN/pg_dump

row() { printf '| %s | %s | %s | %.1f | %d | %s |\n' "$1" "$2" "$3" "$WALL" "$((RSS / 1024))" "$4"; }
human() { numfmt --to=iec-i --suffix=B "$1"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r); $("$PGDUMP" --version)"
echo
echo "| DB size | Method | Setting | Wall (s) | Peak RSS (MiB) | Stored |"
echo "|---|---|---|---|---|---|"
for mb in $SIZES; do
	db=bench_${mb}
	make_db "$db" "$mb"
	size=$(human "$(db_size "$db")")
	url=$(db_url "$db")
	# Warm the cache the same way for every method.
	"$PGDUMP" -Fc -Z0 -d "$url" > /dev/null

	measure floor "$PGDUMP" -Fc -Z0 --no-sync -f /dev/null -d "$url"
	row "$size" 'pg_dump -Fc -Z0 > /dev/null' 'floor' '-'

	measure fc "$PGDUMP" -Fc -f "$WORK/fc.dump" -d "$url"
	row "$size" 'pg_dump -Fc > file' 'gzip -6 (default)' "$(human "$(stat -c %s "$WORK/fc.dump")")"
	rm -f "$WORK/fc.dump"

	measure gzip bash -c "set -o pipefail; '$PGDUMP' -d '$url' | gzip > '$WORK/plain.sql.gz'"
	row "$size" 'pg_dump \| gzip > file' 'plain SQL, gzip -6' "$(human "$(stat -c %s "$WORK/plain.sql.gz")")"
	rm -f "$WORK/plain.sql.gz"

	# The pipeline's own speed: MAX_RATE=off, so the adaptive rate's
	# measurement at the start and its climb from 8 MiB/s (about 14 s of a
	# short dump, see README) do not hide it. Then the defaults as shipped.
	for lv in $LEVELS; do
		rm -rf "$WORK/local"
		measure "local-$lv" env PGBACKUPS_DATABASE_URL="$url" PGBACKUPS_STORAGE_URL="$WORK/local" PGBACKUPS_COMPRESSION_LEVEL="$lv" PGBACKUPS_MAX_RATE=off PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json "$PGBACKUPS" capture
		row "$size" 'pgbackups capture -> local dir' "zstd $lv, MAX_RATE=off" "$(human "$(du -sb "$WORK/local" | cut -f1)")"
	done
	# Encrypted to one age key (its identity was thrown away: nothing here
	# reads the backup back), against the zstd 1 MAX_RATE=off row above.
	rm -rf "$WORK/local"
	measure local-age env PGBACKUPS_DATABASE_URL="$url" PGBACKUPS_STORAGE_URL="$WORK/local" PGBACKUPS_MAX_RATE=off PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json \
		PGBACKUPS_AGE_RECIPIENTS=age1lfp3nwxrk8dzk9hdesd5gvdrte08sw7yvrwff2kjseklxg8wd9hsz2zsyp "$PGBACKUPS" capture
	row "$size" 'pgbackups capture -> local dir' "zstd 1, MAX_RATE=off, age-encrypted" "$(human "$(du -sb "$WORK/local" | cut -f1)")"
	rm -rf "$WORK/local"
	measure local-defaults env PGBACKUPS_DATABASE_URL="$url" PGBACKUPS_STORAGE_URL="$WORK/local" PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json "$PGBACKUPS" capture
	row "$size" 'pgbackups capture -> local dir' "defaults (zstd 1, MAX_RATE=auto)" "$(human "$(du -sb "$WORK/local" | cut -f1)")"
	rm -rf "$WORK/local"
	measure s3-off env PGBACKUPS_DATABASE_URL="$url" $(s3_env "$db-off") PGBACKUPS_MAX_RATE=off PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json "$PGBACKUPS" capture
	row "$size" 'pgbackups capture -> S3 (VersityGW)' "zstd 1, 8MiB x 4 parts, MAX_RATE=off" "$(human "$(du -sb "$WORK/s3/bench/$db-off" | cut -f1)")"
	measure s3 env PGBACKUPS_DATABASE_URL="$url" $(s3_env "$db") PGBACKUPS_GLOBALS=false PGBACKUPS_LOG_FORMAT=json "$PGBACKUPS" capture
	row "$size" 'pgbackups capture -> S3 (VersityGW)' "defaults (zstd 1, 8MiB x 4 parts, MAX_RATE=auto)" "$(human "$(du -sb "$WORK/s3/bench/$db" | cut -f1)")"
	"$PGBIN/psql" -q -d "$(db_url postgres)" -c "DROP DATABASE $db"
done
