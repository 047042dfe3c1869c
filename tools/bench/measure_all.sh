#!/usr/bin/env bash
# Measures, against one earnd at a time on loopback: closed-loop and open-loop earnbench (half
# the closed-loop rate), conversions per second over keep-alive (wrk + conversions.lua), and
# redirect latency while a program's webhook receiver is down. Results (JSON and text) go to
# OUT (default docs/results/earnbench). Every load is bounded by its duration.
#   [ONLY=clicks|conversions|webhooks] tools/bench/measure_all.sh [OUT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${EARND_BIN:-$ROOT/build/bin}
OUT=${1:-$ROOT/docs/results/earnbench}
mkdir -p "$OUT"
export EARND_ADMIN_KEY=bench-admin-key-0123456789
PID="" DATA="" EXTRA=()
stop() { [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=""; rm -rf "$DATA"; }
trap stop EXIT
start() { # start DURABILITY [env...]
  DATA=$(mktemp -d /tmp/earnd-measure.XXXX)
  env "${@:2}" "$BIN/earnd" "${EXTRA[@]}" --data-dir "$DATA" --public-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --durability "$1" 2>"$DATA.log" &
  PID=$!
  for _ in $(seq 100); do grep -q 'event=listening' "$DATA.log" && break; sleep 0.1; done
  local line; line=$(grep -m 1 'event=listening' "$DATA.log")
  PUB=$(sed -n 's/.* public=\([^ ]*\).*/\1/p' <<<"$line")
  ADM=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
}
api() { curl -fsS -H "Authorization: Bearer $EARND_ADMIN_KEY" -H 'Content-Type: application/json' "http://$ADM$1" ${2:+--data "$2"}; }
rate_of() { python3 -c 'import json,sys;print(int(json.load(open(sys.argv[1]))["throughput_rps"]))' "$1"; }

ONLY=${ONLY:-all}
for dur in group async; do
  [[ $ONLY == all || $ONLY == clicks ]] || continue
  start "$dur"
  "$BIN/earnbench" --url "http://$PUB" --admin-url "http://$ADM" --setup --codes 1000 --duration 10s \
    --connections 64 --server-pid "$PID" --json "$OUT/closed-$dur.json" >"$OUT/closed-$dur.txt"
  half=$(( $(rate_of "$OUT/closed-$dur.json") / 2 ))
  "$BIN/earnbench" --url "http://$PUB" --admin-url "http://$ADM" --codes 1000 --duration 10s \
    --connections 64 --rate "$half" --server-pid "$PID" --json "$OUT/open-half-$dur.json" >"$OUT/open-half-$dur.txt"
  stop
done

if [[ $ONLY == all || $ONLY == conversions ]]; then
# Conversions per second, keep-alive, group durability: sales naming no click (unattributed, the
# whole intake path: key check, idempotency record, matching, ledger) from wrk. The per-client
# and per-program rate limits (1,000 and 5,000 a second by default) are turned off for it.
NOLIMIT=$(mktemp /tmp/earnd-nolimit.XXXX.toml)
printf '[server]\nconversion_rate_per_client = 0\nconversion_rate_per_program = 0\n' >"$NOLIMIT"
EXTRA=(--config "$NOLIMIT")
start group
key=$(api /v1/programs '{"id":"conv","name":"Conv","currency":"USD","destination":"https://example.com/","allowed_hosts":["example.com"],"rewards":[{"event":"sale","referrer":{"percent":20}}]}' \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["program_key"])')
EARND_PROGRAM_KEY=$key WRK_PREFIX=g wrk -t2 -c16 -d10s -s "$ROOT/tools/bench/conversions.lua" "http://$PUB" >"$OUT/conversions-group.txt"
stop
start async
key=$(api /v1/programs '{"id":"conv","name":"Conv","currency":"USD","destination":"https://example.com/","allowed_hosts":["example.com"],"rewards":[{"event":"sale","referrer":{"percent":20}}]}' \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["program_key"])')
EARND_PROGRAM_KEY=$key WRK_PREFIX=a wrk -t2 -c16 -d10s -s "$ROOT/tools/bench/conversions.lua" "http://$PUB" >"$OUT/conversions-async.txt"
stop
EXTRA=()

fi

if [[ $ONLY == all || $ONLY == webhooks ]]; then
# Redirect latency with the program's webhook receiver down (a closed loopback port) versus no
# webhook, open loop at 5,000 clicks/s with 5% of the clicks followed by a sale (each sale makes
# conversion.attributed and reward.created events that fail and are retried).
dead=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
for mode in none down; do
  start group EARND_WEBHOOKS_ALLOW_PRIVATE=1
  hook=""; [[ $mode == down ]] && hook=",\"webhook_url\":\"http://127.0.0.1:$dead/hook\""
  key=$(api /v1/programs "{\"id\":\"wh\",\"name\":\"WH\",\"currency\":\"USD\",\"destination\":\"https://example.com/\",\"allowed_hosts\":[\"example.com\"],\"rewards\":[{\"event\":\"sale\",\"referrer\":{\"percent\":20}}]$hook}" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["program_key"])')
  api /v1/programs/wh/referrers '{"external_id":"r1","name":"R","code":"whcode"}' >/dev/null
  EARND_PROGRAM_KEY=$key "$BIN/earnbench" --url "http://$PUB" --admin-url "http://$ADM" --code whcode \
    --duration 10s --connections 32 --rate 5000 --conversions-per-click 0.05 --server-pid "$PID" \
    --json "$OUT/webhook-$mode.json" >"$OUT/webhook-$mode.txt"
  api "/v1/webhooks/deliveries?per_page=1" >"$OUT/webhook-$mode-deliveries.json" || true
  curl -fsS -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://$ADM/metrics" | grep -E '^earnd_webhook' >"$OUT/webhook-$mode-metrics.txt" || true
  stop
done
fi
echo "results in $OUT"
