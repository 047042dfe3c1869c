#!/usr/bin/env bash
# Rebuild of a new worker from a large click stream, on the 3-node NATS fixture (its own base
# directory and ports, offset 650): two earnd nodes (role both) take attribution-bench data sets
# through `earnctl import clicks --node` (SETS of 1 M clicks each, default 2, seeds 42, 7, 8 ...)
# until the stream holds them all; then node c, empty, starts as a worker and the script times
# how long it takes to index the whole stream, and checks its log for slow-consumer drops and
# that it is still running. Also times how long the two nodes took to settle after the import
# (spool, catalog replication and indexes). Output: OUT/figures.txt (default
# docs/results/cluster-rebuild). Every step is bounded.
#   [SETS=2] tools/bench/cluster_rebuild.sh [OUT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${EARND_BIN:-$ROOT/build/bin}
OUT=${1:-$ROOT/docs/results/cluster-rebuild}
SETS=${SETS:-2}
NATS_SH=$ROOT/../shared/cluster/nats-cluster.sh
BENCH=$ROOT/../shared/attribution-bench
export NATS_PORT_OFFSET=650 EARND_ADMIN_KEY=bench-admin-key-0123456789
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/earnd-cluster-rebuild.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do timeout 30 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  timeout 60 bash "$NATS_SH" stop "$WORK/nats" >/dev/null 2>&1 || true
  cp "$WORK"/*.log "$OUT/" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

start_node() { # name [args...]: sets <name>_PID, <name>_ADM
  local name=$1; shift
  # stdout too: a node started inside the tee'd block would otherwise hold tee's pipe open
  "$BIN/earnd" --data-dir "$WORK/$name" --public-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
    >>"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do grep -q 'event=listening' "$WORK/$name.log" && break; sleep 0.1; done
  local line; line=$(grep -m 1 'event=listening' "$WORK/$name.log")
  printf -v "${name}_PID" %s "$pid"
  printf -v "${name}_ADM" %s "$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")"
}
status() { curl -fsS --max-time 5 -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://$1/v1/cluster/status"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
now() { date +%s.%N; }

timeout 90 bash "$NATS_SH" start "$WORK/nats" >/dev/null
URLS=$(bash "$NATS_SH" urls "$WORK/nats")
start_node a --cluster "$URLS"
start_node b --cluster "$URLS"

seeds=(42 7 8 9 10 11)
{
  echo "# cluster rebuild, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, SETS=$SETS"
  for ((i = 0; i < SETS; i++)); do
    python3 "$BENCH/gen_data.py" --clicks 1000000 --conversions 1000 --seed "${seeds[$i]}" \
      --out "$WORK/data$i" >/dev/null
    "$BIN/earnctl" import clicks "$WORK/data$i/clicks.csv" --node "http://$a_ADM" --node "http://$b_ADM" \
      --program "set$i"
  done
  t0=$(now)
  for _ in $(seq 600); do
    sa=$(status "$a_ADM") sb=$(status "$b_ADM")
    last=$(field stream_last_seq <<<"$sa")
    if [[ $(field spool_depth <<<"$sa") == 0 && $(field spool_depth <<<"$sb") == 0 &&
          $(field meta_pending <<<"$sa") == 0 && $(field meta_pending <<<"$sb") == 0 &&
          $(field applied_seq <<<"$sa") -ge $last && $(field applied_seq <<<"$sb") -ge $last ]]; then
      break
    fi
    sleep 0.5
  done
  echo "settled after the last import in $(python3 -c "print(round($(now) - $t0, 1))") s; stream last seq $last"

  t0=$(now)
  start_node c --cluster "$URLS" --role worker
  done_at=""
  for _ in $(seq 1200); do
    kill -0 "$c_PID" 2>/dev/null || { echo "node c exited during the rebuild"; break; }
    sc=$(status "$c_ADM" 2>/dev/null) || { sleep 0.5; continue; }
    if [[ $(field applied_seq <<<"$sc") -ge $last ]]; then done_at=$(now); break; fi
    sleep 0.5
  done
  if [[ -n $done_at ]]; then
    secs=$(python3 -c "print(round($done_at - $t0, 1))")
    echo "node c indexed $last messages in $secs s: $(python3 -c "print(round($last / ($done_at - $t0)))") clicks/s, including its start"
  else
    echo "node c did not finish the rebuild within 600 s"
  fi
  echo "node c slow-consumer drops: $(grep -c -i 'slow consumer' "$WORK/c.log" || true)," \
    "gaps and stalls: $(grep -c 'event=click_gap\|event=click_consumer_stalled' "$WORK/c.log" || true)," \
    "running: $(kill -0 "$c_PID" 2>/dev/null && echo yes || echo no)," \
    "peak RSS $(awk '/^VmHWM/{printf "%.0f MiB", $2/1024}' "/proc/$c_PID/status" 2>/dev/null || echo -)"
  # Node c was started in this block's subshell, so the cleanup's list does not have it.
  kill -TERM "$c_PID" 2>/dev/null || true
  timeout 30 tail --pid="$c_PID" -f /dev/null || kill -9 "$c_PID" 2>/dev/null || true
} | tee "$OUT/figures.txt"
