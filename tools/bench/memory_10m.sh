#!/usr/bin/env bash
# earnd's memory while it stores 10 million clicks: a fresh earnd (DURABILITY, default group;
# defaults otherwise) takes CLICKS clicks (default 10,000,000) from earnbench (1,000 links, 64
# connections, closed loop, bounded by count and by MAX_SECONDS); every 5 seconds the script
# records the clicks stored (from /metrics) and the server's resident memory. Output: a table in
# OUT (default docs/results/memory-10m.txt) and earnbench's JSON beside it.
#   tools/bench/memory_10m.sh [OUT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${EARND_BIN:-$ROOT/build/bin}
DURABILITY=${DURABILITY:-group}
OUT=${1:-$ROOT/docs/results/memory-10m-$DURABILITY.txt}
CLICKS=${CLICKS:-10000000}
MAX_SECONDS=${MAX_SECONDS:-600}
export EARND_ADMIN_KEY=bench-admin-key-0123456789
DATA=$(mktemp -d /tmp/earnd-memory.XXXX)
PID="" SAMPLER=""
stop() {
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null || true
  [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap stop EXIT
"$BIN/earnd" --data-dir "$DATA/db" --public-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --durability "$DURABILITY" 2>"$DATA/log" &
PID=$!
for _ in $(seq 100); do grep -q 'event=listening' "$DATA/log" && break; sleep 0.1; done
line=$(grep -m 1 'event=listening' "$DATA/log")
PUB=$(sed -n 's/.* public=\([^ ]*\).*/\1/p' <<<"$line")
ADM=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")

sample() {
  local start; start=$(date +%s)
  while kill -0 "$PID" 2>/dev/null; do
    local stored rss
    stored=$(curl -fsS -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://$ADM/metrics" |
      awk '/^earnd_clicks_stored_total /{print $2}')
    rss=$(awk '/^VmRSS/{print $2}' "/proc/$PID/status")
    printf '%6d s  %10s clicks stored  %8.1f MiB RSS\n' $(($(date +%s) - start)) "$stored" \
      "$(bc -l <<<"$rss/1024")"
    sleep 5
  done
}
{
  echo "# $(date -u +%FT%TZ) earnd $DURABILITY, earnbench 1,000 links, 64 connections, $CLICKS clicks"
  sample
} >"$OUT" &
SAMPLER=$!
"$BIN/earnbench" --url "http://$PUB" --admin-url "http://$ADM" --setup --codes 1000 \
  --connections 64 --requests "$CLICKS" --duration "${MAX_SECONDS}s" --server-pid "$PID" \
  --json "${OUT%.txt}.json" >"${OUT%.txt}-earnbench.txt"
sleep 6
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
du -sb "$DATA/db" | awk '{printf "data directory after the run: %.1f MB\n", $1/1e6}' >>"$OUT"
cat "$OUT"
