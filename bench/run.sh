#!/usr/bin/env bash
# Every benchmark; results go to stdout as markdown (paste into README).
set -euo pipefail
cd "$(dirname "$0")"
./capture.sh "$@"
if [ -x ./nostall.sh ]; then ./nostall.sh; fi
if [ -x ./delete.sh ]; then ./delete.sh; fi
