#!/usr/bin/env bash
# The figures of docs/scale-out.md, on the 3-node NATS fixture of ../shared/cluster (its own
# base directory and ports, offset 600): two earnd nodes in cluster mode (role both);
# earnbench open loop at RATE clicks/s (default 10,000) against node a for SECONDS (default 600)
# while the script samples every 10 s the NATS servers' resident memory and node a's spool,
# forward lag and index lag; then the takeover time of a dead worker (node b SIGKILLed, until
# node a holds all 64 shards) and the rebuild speed of a new worker (node c, empty, until it
# has indexed the whole stream). Single-node earnbench at the same rate for comparison first.
# Output in OUT (default docs/results/cluster): earnbench JSON and text, samples.txt,
# figures.txt. Every step is bounded.
#   [RATE=10000] [SECONDS=600] tools/bench/cluster_figures.sh [OUT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${EARND_BIN:-$ROOT/build/bin}
OUT=${1:-$ROOT/docs/results/cluster}
RATE=${RATE:-10000}
SECONDS_LOAD=${SECONDS:-600}
NATS_SH=$ROOT/../shared/cluster/nats-cluster.sh
export NATS_PORT_OFFSET=600 EARND_ADMIN_KEY=bench-admin-key-0123456789
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/earnd-cluster-figures.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do timeout 30 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  timeout 60 bash "$NATS_SH" stop "$WORK/nats" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM  # so that a signal still runs cleanup (EXIT) and stops the servers

start_node() { # name [args...]: sets <name>_PID, <name>_PUB, <name>_ADM
  local name=$1; shift
  "$BIN/earnd" --data-dir "$WORK/$name" --public-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
    2>"$WORK/$name.log" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 150); do grep -q 'event=listening' "$WORK/$name.log" && break; sleep 0.1; done
  local line; line=$(grep -m 1 'event=listening' "$WORK/$name.log")
  printf -v "${name}_PID" %s "$pid"
  printf -v "${name}_PUB" %s "$(sed -n 's/.* public=\([^ ]*\).*/\1/p' <<<"$line")"
  printf -v "${name}_ADM" %s "$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")"
}
status() { curl -fsS --max-time 2 -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://$1/v1/cluster/status"; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(len(v) if isinstance(v,list) else v)' "$1"; }
rss_mib() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }

# Single-node mode at the same rate, for the "cluster mode off" line.
start_node single --durability group
"$BIN/earnbench" --url "http://$single_PUB" --admin-url "http://$single_ADM" --setup --codes 1000 \
  --connections 64 --rate "$RATE" --duration 60s --server-pid "$single_PID" \
  --json "$OUT/single-node.json" >"$OUT/single-node.txt"
kill -TERM "$single_PID"; wait "$single_PID" || true

timeout 90 bash "$NATS_SH" start "$WORK/nats" >/dev/null
URLS=$(bash "$NATS_SH" urls "$WORK/nats")
start_node a --cluster "$URLS"
start_node b --cluster "$URLS"
sleep 2

{
  echo "# $(date -u +%FT%TZ) every 10 s: NATS RSS n1 n2 n3 (MiB), node a spool, forward lag s, index lag ms"
  while true; do
    s=$(status "$a_ADM" 2>/dev/null || echo '{}')
    printf '%s  n1 %s  n2 %s  n3 %s  spool %s  fwd_lag %s  idx_lag %s\n' "$(date -u +%T)" \
      "$(rss_mib "$(cat "$WORK/nats/n1.pid")")" "$(rss_mib "$(cat "$WORK/nats/n2.pid")")" \
      "$(rss_mib "$(cat "$WORK/nats/n3.pid")")" \
      "$(field spool_depth <<<"$s" 2>/dev/null || echo -)" \
      "$(field forward_lag_s <<<"$s" 2>/dev/null || echo -)" \
      "$(field index_lag_ms_last <<<"$s" 2>/dev/null || echo -)"
    sleep 10
  done
} >"$OUT/samples.txt" &
SAMPLER=$!
PIDS+=("$SAMPLER")
"$BIN/earnbench" --url "http://$a_PUB" --admin-url "http://$a_ADM" --setup --codes 1000 \
  --connections 64 --rate "$RATE" --duration "${SECONDS_LOAD}s" --server-pid "$a_PID" \
  --json "$OUT/cluster-a.json" >"$OUT/cluster-a.txt"
kill "$SAMPLER" 2>/dev/null || true

# Takeover: node b dies; node a must end up holding all 64 shards.
for _ in $(seq 100); do [[ $(status "$a_ADM" | field spool_depth) == 0 ]] && break; sleep 0.2; done
held_before=$(status "$a_ADM" | field held_shards)
kill -9 "$b_PID"
t0=$(date +%s.%N)
for _ in $(seq 600); do
  [[ $(status "$a_ADM" | field held_shards) == 64 ]] && break
  sleep 0.1
done
t1=$(date +%s.%N)
held_after=$(status "$a_ADM" | field held_shards)
takeover=$(python3 -c "print(round($t1-$t0,2))")

# Rebuild: a new, empty worker indexes the whole stream.
target=$(status "$a_ADM" | field applied_seq)
r0=$(date +%s.%N)
start_node c --cluster "$URLS" --role worker
for _ in $(seq 1200); do
  seq=$(status "$c_ADM" 2>/dev/null | field applied_seq 2>/dev/null || echo 0)
  ((seq >= target)) && break
  sleep 0.5
done
r1=$(date +%s.%N)
indexed=$(status "$c_ADM" | field indexed)
rebuild_s=$(python3 -c "print(round($r1-$r0,1))")
rate=$(python3 -c "print(int($indexed/($r1-$r0)))")
{
  echo "# $(date -u +%FT%TZ) cluster figures (RATE=$RATE, SECONDS=$SECONDS_LOAD)"
  echo "takeover: node b SIGKILLed; node a held $held_before shards before, $held_after after $takeover s"
  echo "rebuild: node c (worker, empty) applied stream sequence $target in $rebuild_s s: $indexed clicks indexed, $rate clicks/s (including its start)"
} | tee "$OUT/figures.txt"
