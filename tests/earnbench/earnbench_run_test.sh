#!/usr/bin/env bash
# earnbench against a real earnd: set-up through the admin API, a 2 s closed-loop run, a 1 s
# open-loop run with new connections and conversions, then `earnbench plan` from the first
# result. Checks that the result files are well formed and error-free, not how fast anything is.
# Usage: earnbench_run_test.sh EARND EARNBENCH
set -euo pipefail
EARND=$1
EARNBENCH=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/earnbench-test.XXXXXX")
export EARND_ADMIN_KEY=earnbench-test-admin-key-0123456789
PID=

cleanup() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- earnd log"
  cat "$WORK/earnd.log"
  exit 1
}

# Start earnd on free ports and read them from its `event=listening` line.
"$EARND" --data-dir "$WORK/data" --public-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  2>"$WORK/earnd.log" &
PID=$!
for _ in $(seq 100); do
  grep -q 'event=listening' "$WORK/earnd.log" && break
  kill -0 "$PID" 2>/dev/null || fail "earnd exited at start"
  sleep 0.1
done
line=$(grep -m 1 'event=listening' "$WORK/earnd.log") || fail "earnd printed no listening line"
PUB=$(sed -n 's/.* public=\([^ ]*\).*/\1/p' <<<"$line")
ADM=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
[[ -n $PUB && -n $ADM ]] || fail "no addresses in: $line"

# Closed loop, as fast as possible.
"$EARNBENCH" --url "http://$PUB" --admin-url "http://$ADM" --setup --duration 2s --connections 8 \
  --server-pid "$PID" --json "$WORK/closed.json" || fail "closed-loop run exited non-zero"
python3 - "$WORK/closed.json" <<'PY' || fail "closed-loop result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["throughput_rps"] > 0, d["throughput_rps"]
assert d["errors"]["total"] == 0, d["errors"]
assert d["redirects_302"] == d["requests"] > 0, (d["redirects_302"], d["requests"])
lat = d["latency_us"]
assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
s = d["server"]
assert s["metrics"] == "read", s
assert s["clicks_stored"] == d["requests"], (s["clicks_stored"], d["requests"])
assert s["bytes_written_per_click"] > 0 and s["mean_batch_size"] >= 1, s
assert s["mean_commit_us"] > 0 and s["cpu_cores_used"] > 0 and s["rss_bytes"] > 0, s
assert d["capacity"]["clicks_per_day"] > 0
PY

# Open loop at 400 clicks/s for 1 s: exactly 400 scheduled clicks, a quarter of them on new
# connections, a fifth followed by a sale for the click.
"$EARNBENCH" --url "http://$PUB" --admin-url "http://$ADM" --setup --duration 1s --rate 400 \
  --connections 4 --new-conn-share 0.25 --conversions-per-click 0.2 --json "$WORK/open.json" \
  || fail "open-loop run exited non-zero"
python3 - "$WORK/open.json" <<'PY' || fail "open-loop result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["scenario"]["mode"] == "open-loop", d["scenario"]
assert d["requests"] == 400, d["requests"]
assert d["errors"]["total"] == 0, d["errors"]
assert d["new_connections"] > 50, d["new_connections"]
c = d["conversions"]
assert c["sent"] > 20 and c["accepted"] == c["sent"], c
PY

# The plan from the closed-loop run.
"$EARNBENCH" plan --clicks-per-day 10000000 --peak-factor 3 --retention-days 30 \
  --from-json "$WORK/closed.json" >"$WORK/plan.txt" || fail "plan exited non-zero"
grep -q "measured run in $WORK/closed.json on this machine" "$WORK/plan.txt" || fail "plan: $(cat "$WORK/plan.txt")"
grep -Eq '^  cores +[0-9]+ ' "$WORK/plan.txt" || fail "plan has no cores: $(cat "$WORK/plan.txt")"
if "$EARNBENCH" plan --clicks-per-day 1 --peak-factor 1 --retention-days 1 >/dev/null 2>&1; then
  fail "plan without --from-json succeeded"
fi

# SIGTERM stops earnd cleanly.
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[[ $rc == 0 ]] || fail "earnd exited $rc after SIGTERM"
echo "earnbench against earnd: ok"
