#!/usr/bin/env bash
# The S data set of attribution-bench through two earnd nodes in scale-out mode (each an edge and
# a worker) on the 3-node NATS fixture: `earnctl import clicks --node A --node B` sends the file
# in parts through both edges' spools to the stream, both workers index it, and `earnctl attribute
# --node A --node B` scatters the conversions over the workers' shards and gathers the sums. The
# canonical checksums must equal the published ones for both models, as in single-node mode.
# Usage: attribution_s.sh EARND EARNCTL BENCH_DIR NATS_URLS. Exit 77 (skipped) without python3.
set -euo pipefail
earnd=$1 earnctl=$2 bench=$3 urls=$4
command -v python3 >/dev/null && [[ -f $bench/gen_data.py ]] || { echo "skip: no python3 or bench"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/earnd_cluster_s.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for n in a b; do [[ -f $work/$n.log ]] && grep -v "level=info" "$work/$n.log" | tail -n 20 | sed "s/^/[log $n] /" >&2; done
  exit 1
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

export EARND_ADMIN_KEY=cluster-s-admin-key-0123456789
declare -A adm
for n in a b; do
  pub=$(free_port) adm[$n]=$(free_port)
  "$earnd" --data-dir "$work/$n" --public-listen "127.0.0.1:$pub" --admin-listen "127.0.0.1:${adm[$n]}" \
    --cluster "$urls" >"$work/$n.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$pub/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$pub/healthz" >/dev/null || fail "node $n did not start"
done
nodes=(--node "http://127.0.0.1:${adm[a]}" --node "http://127.0.0.1:${adm[b]}")

python3 "$bench/gen_data.py" --size S --out "$work/data" >/dev/null
clicks=$(($(wc -l <"$work/data/clicks.csv") - 1))
out=$("$earnctl" import clicks "$work/data/clicks.csv" "${nodes[@]}" --program s-bench) || fail "import: $out"
echo "$out"
[[ $out == "imported $clicks clicks in "*" through 2 node(s) in "* ]] || fail "import reported: $out"

declare -A expected=(
  [last]=80dae7e008c9493b596f410477f3913382313712d4e88b500e360aa3c64dbb36
  [first]=93d923e8b7b45e14b9bda51c206f4d7a5d7c91702f1db3ebea2506141b356100)
for model in last first; do
  start=$(date +%s.%N)
  "$earnctl" attribute "${nodes[@]}" --settle 300 --conversions "$work/data/conversions.csv" \
    --model "${model}_click" --window 30d --program s-bench --out "$work/$model.csv" >"$work/$model.txt" \
    || fail "attribute $model: $(cat "$work/$model.txt")"
  got=$(python3 "$bench/attrib_check.py" canon "$work/$model.csv" | cut -d' ' -f1)
  [[ $got == "${expected[$model]}" ]] || fail "$model-click: checksum $got, expected ${expected[$model]}"
  echo "$model-click checksum $got matches ($(tail -n 1 "$work/$model.txt"))"
done

# Both workers took part: each holds some shards, and each indexed the whole file.
for n in a b; do
  st=$(curl -fsS -H "Authorization: Bearer $EARND_ADMIN_KEY" "http://127.0.0.1:${adm[$n]}/v1/cluster/status")
  held=$(python3 -c 'import json,sys;print(len(json.loads(sys.argv[1])["held_shards"]))' "$st")
  echo "node $n holds $held shards"
  [[ $held -gt 0 && $held -lt 64 ]] || fail "node $n holds $held shards: $st"
done

# A row no listed worker answers (only one of the two named) fails, naming the lines.
if "$earnctl" attribute --node "http://127.0.0.1:${adm[a]}" --settle 30 \
  --conversions "$work/data/conversions.csv" --out "$work/half.csv" 2>"$work/half.err" >/dev/null; then
  fail "attribute over one of two workers succeeded"
fi
grep -q "did not answer every row exactly once" "$work/half.err" || fail "unclear error: $(cat "$work/half.err")"

for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "a node did not stop cleanly"; done
pids=()
echo "ok"
