#!/usr/bin/env bash
# `earnctl attribute` with revenue sums beyond 64 bits and `earnctl import conversions` with an
# amount above earnd's maximum: the sums stay exact, the columns stay apart, the import fails
# naming the line. Usage: earnctl_sums.sh EARNCTL.
set -euo pipefail
earnctl=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/earnd_earnctl_sums.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# One visitor clicks once; 20,000 sales of 10^15 follow within the window (2 x 10^19 in all,
# above 2^64 - 1 = 18446744073709551615), plus one sale by a visitor who never clicked.
printf 'click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot\n0000000000000001,1704067200000,code1,ref_with_a_rather_long_external_id,v1,0\n' >"$work/clicks.csv"
{
  echo "conv_id,ts_ms,visitor_id,amount_cents,kind"
  for ((i = 0; i < 20000; i++)); do echo "c$i,1704070800000,v1,1000000000000000,sale"; done
  echo "lone,1704070800000,v2,1000000000000000,sale"
} >"$work/conv.csv"
"$earnctl" import clicks "$work/clicks.csv" --data-dir "$work/db" >/dev/null || fail "import clicks"
"$earnctl" attribute --data-dir "$work/db" --conversions "$work/conv.csv" --model last_click \
  --window 30d --out "$work/out.csv" >"$work/summary.txt" || fail "attribute"
grep -qx "ref_with_a_rather_long_external_id,20000,20000000000000000000" "$work/out.csv" \
  || fail "sum: $(cat "$work/out.csv")"
grep -qx ",1,1000000000000000" "$work/out.csv" || fail "unattributed: $(cat "$work/out.csv")"
grep -Eq '^ref_with_a_rather_long_external_id +20000 +20000000000000000000$' "$work/summary.txt" \
  || fail "summary: $(cat "$work/summary.txt")"
grep -Eq '^\(attributed\) +20000 +20000000000000000000$' "$work/summary.txt" \
  || fail "summary: $(cat "$work/summary.txt")"

# The importer refuses what the server would refuse, naming the line.
printf 'conv_id,ts_ms,visitor_id,amount_cents,kind\nok,1704070800000,v1,1000000000000000,sale\nbig,1704070800000,v1,1000000000000001,sale\n' >"$work/big.csv"
if "$earnctl" import conversions "$work/big.csv" --data-dir "$work/db" 2>"$work/big.err"; then
  fail "an amount above 10^15 was imported"
fi
grep -q "big.csv:3: amount_cents must be an integer from 0 to 1000000000000000" "$work/big.err" \
  || fail "unclear error: $(cat "$work/big.err")"
echo "ok"
