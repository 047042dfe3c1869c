#!/usr/bin/env bash
# Cold store against warm store in group durability: three 5 s closed-loop earnbench runs on a
# fresh store, 90 s of load (memtables flushed, WAL files recyclable, compactions running), then
# three 5 s runs again. Prints req/s (302 answers), p99, mean commit, batch and server CPU per
# request of each run. One earnd on ephemeral loopback ports, stopped at the end.
set -euo pipefail
B=${EARND_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
W=$(mktemp -d /tmp/warm.XXXX)
export EARND_ADMIN_KEY=warm-admin-key-0123456789abcdef
$B/earnd --data-dir $W/data --public-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --durability group 2>$W/earnd.log &
PID=$!
trap 'kill -TERM $PID; wait $PID; rm -rf $W' EXIT
for i in $(seq 100); do grep -q event=listening $W/earnd.log && break; sleep 0.1; done
line=$(grep -m1 event=listening $W/earnd.log)
PUB=$(sed -n 's/.* public=\([^ ]*\).*/\1/p' <<<"$line"); ADM=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
run() { # label seconds
  $B/earnbench --url http://$PUB --admin-url http://$ADM --codes 1000 --connections 64 --duration $2 --server-pid $PID --json $W/r.json >/dev/null 2>&1 || true
  python3 -c "
import json; d=json.load(open('$W/r.json')); s=d['server']
print('$1', round(d['capacity']['rps_302']), 'req/s p99', d['latency_us']['p99'], 'commit_us', round(s.get('mean_commit_us') or 0), 'batch', round(s.get('mean_batch_size') or 0,1), 'cpu_us', round(s.get('cpu_us_per_request') or 0,1))"
}
$B/earnbench --url http://$PUB --admin-url http://$ADM --setup --codes 1000 --connections 4 --duration 200ms >/dev/null 2>&1 || true
for k in 1 2 3; do run cold 5s; done
ls -la $W/data/*.log 2>/dev/null | awk '{print $5, $9}' | tail -5
run warmup 90s
ls -la $W/data/*.log 2>/dev/null | awk '{print $5, $9}' | tail -8
for k in 1 2 3; do run warm 5s; done
grep -c 'Recycl' $W/data/LOG 2>/dev/null || true
