#!/usr/bin/env bash
# Runs ../shared/peers/compare.sh against earnd for one durability and connection mode, with a
# program and the link "abc123" created first, then prints bytes on disk per click after a full
# compaction. Loopback only; every run is bounded by wrk's duration.
#
#   tools/bench/compare_nginx.sh group ka   [rounds] [duration_s]
#   tools/bench/compare_nginx.sh async close
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
durability=${1:-group} conn=${2:-ka} rounds=${3:-3} duration=${4:-10}
BIN=${EARND_BIN:-$ROOT/build/bin}
PEERS=$ROOT/../shared/peers
export EARND_ADMIN_KEY=bench-admin-key-0123456789
data=$(mktemp -d /tmp/earnd-bench.XXXX)
port=${OURS_PORT:-18081}
admin=$((port + 100))
"$BIN/earnd" --data-dir "$data" --public-listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin \
  --durability "$durability" 2>"$data.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -fsS -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://127.0.0.1:$admin$1" --data "$2" >/dev/null; }
api /v1/programs '{"id":"bench","name":"Bench","currency":"USD","destination":"https://example.com/landing","allowed_hosts":["example.com"]}'
api /v1/programs/bench/referrers '{"external_id":"r1","name":"R","code":"abc123"}'

(cd "$PEERS" && ./compare.sh --ours-url "http://127.0.0.1:$port/r/abc123" --label "earnd-$durability" \
  --nginx-workers 2 --nginx-log buf --conn "$conn" -t 2 -c 64 -d "$duration" --rounds "$rounds")

kill -TERM $pid; wait $pid
"$BIN/earnctl" stats --data-dir "$data" --compact
