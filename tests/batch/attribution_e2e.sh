#!/usr/bin/env bash
# End-to-end check of `earnctl import` + `earnctl attribute` against attribution-bench: generates
# a data set, imports it, attributes it with both models and compares the canonical checksums
# with the pure-Python reference (or, for EARND_BATCH_E2E_SIZE=S, with the published ones).
# Usage: attribution_e2e.sh EARNCTL BENCH_DIR. Exit 77 (skipped) without python3 or the bench.
set -euo pipefail
earnctl=$1
bench=$2
command -v python3 >/dev/null && [[ -f $bench/gen_data.py ]] || { echo "skip: no python3 or bench"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/earnd_batch_e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

declare -A expected=()
if [[ ${EARND_BATCH_E2E_SIZE:-} == S ]]; then
  python3 "$bench/gen_data.py" --size S --out "$work/data" >/dev/null
  expected[last]=80dae7e008c9493b596f410477f3913382313712d4e88b500e360aa3c64dbb36
  expected[first]=93d923e8b7b45e14b9bda51c206f4d7a5d7c91702f1db3ebea2506141b356100
else
  python3 "$bench/gen_data.py" --clicks 200000 --conversions 6000 --seed 7 --out "$work/data" >/dev/null
fi
clicks=$(($(wc -l <"$work/data/clicks.csv") - 1))

out=$("$earnctl" import clicks "$work/data/clicks.csv" --data-dir "$work/db") || fail "import clicks"
echo "$out"
[[ $out == "imported $clicks clicks in "* ]] || fail "import reported: $out"
"$earnctl" import conversions "$work/data/conversions.csv" --data-dir "$work/db" || fail "import conversions"

checksum() { python3 "$bench/attrib_check.py" "$@" | cut -d' ' -f1; }
for model in last first; do
  "$earnctl" attribute --data-dir "$work/db" --conversions "$work/data/conversions.csv" \
    --model "${model}_click" --window 30d --out "$work/$model.csv" >"$work/$model.txt" \
    || fail "attribute $model"
  want=${expected[$model]:-$(checksum reference --data "$work/data" --model "$model")}
  got=$(checksum canon "$work/$model.csv")
  [[ $got == "$want" ]] || fail "$model: checksum $got, expected $want"
  echo "$model-click checksum $got matches"
done

# The window in hours is the same window.
"$earnctl" attribute --data-dir "$work/db" --conversions "$work/data/conversions.csv" \
  --model last_click --window 720h --out "$work/last_h.csv" >/dev/null || fail "attribute 720h"
cmp -s "$work/last.csv" "$work/last_h.csv" || fail "--window 720h differs from 30d"

# A data directory without imported clicks has no visitor secret: a clear failure.
mkdir -p "$work/empty"
"$earnctl" stats --data-dir "$work/empty" >/dev/null || fail "creating an empty store"
if "$earnctl" attribute --data-dir "$work/empty" --conversions "$work/data/conversions.csv" \
  --out "$work/empty.csv" 2>"$work/empty.err"; then
  fail "attribute on an empty data dir succeeded"
fi
grep -q "no visitor secret" "$work/empty.err" || fail "unclear error: $(cat "$work/empty.err")"
echo "ok"
