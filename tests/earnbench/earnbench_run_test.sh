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

# Bad input: a clear message and exit 2, before any load is sent (each bounded by timeout).
refused() { # expected-message-part args...
  local want=$1; shift
  local rc=0
  timeout 20 "$EARNBENCH" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
  [[ $rc == 2 ]] || fail "earnbench $* exited $rc, not 2: $(cat "$WORK/err.txt")"
  grep -q -- "$want" "$WORK/err.txt" || fail "earnbench $*: no '$want' in: $(cat "$WORK/err.txt")"
}
refused "--rate" --url "http://$PUB" --duration 1s --rate inf
refused "--rate" --url "http://$PUB" --duration 1s --rate nan
refused "--zipf" --url "http://$PUB" --duration 1s --zipf nan
refused "--connections" --url "http://$PUB" --duration 1s --connections 100000
refused "--codes" --url "http://$PUB" --duration 1s --codes 4000000000
refused "longer than" --url "http://$PUB" --duration 1000h
refused "--requests" --url "http://$PUB" --duration 1s --requests -5
refused "cannot write $WORK/no/such/dir/r.json" --url "http://$PUB" --duration 1s --json "$WORK/no/such/dir/r.json"
printf 'connections = [8\n' >"$WORK/broken.toml"
refused "scenario $WORK/broken.toml" --scenario "$WORK/broken.toml" --url "http://$PUB"
printf 'conectionz = 8\n' >"$WORK/typo.toml"
refused "unknown key 'conectionz'" --scenario "$WORK/typo.toml" --url "http://$PUB"
refused "--rate must be at least" --url "http://$PUB" --duration 1s --rate 1e-300
refused "is not http://HOST:PORT" --url "http://127.0.0.1:108713" --duration 1s
refused "Could not convert" --url "http://$PUB" --connections abc
printf 'connections = "many"\n' >"$WORK/type.toml"
refused "may come from the scenario $WORK/type.toml" --scenario "$WORK/type.toml" --url "http://$PUB"
refused "unknown key 'conectionz'" --scenario "$WORK/typo.toml" --url "http://$PUB" --json plan
refused "--peak-factor" plan --clicks-per-day 1000 --peak-factor -5 --retention-days 30 --from-json "$WORK/closed.json"
refused "--target-utilization" plan --clicks-per-day 1000 --peak-factor 2 --retention-days 30 --target-utilization 2 --from-json "$WORK/closed.json"

# A scenario in full TOML (digit separators, a multi-line string, escapes): 5,000/s for 300 ms
# on code b000, which --setup made.
printf 'rate = 5_000\nduration = """300ms"""\ncode = "b\\u0030\\u0030\\u0030"\nconnections = 4\n' \
  >"$WORK/full.toml"
"$EARNBENCH" --scenario "$WORK/full.toml" --url "http://$PUB" --json "$WORK/full.json" >/dev/null \
  || fail "full TOML scenario exited non-zero"
python3 - "$WORK/full.json" <<'PY' || fail "full TOML scenario result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["requests"] == 1500 == d["redirects_302"], (d["requests"], d["redirects_302"])
PY

# --requests with an open loop: the rate over the time it took, no "did not keep up" warning.
"$EARNBENCH" --url "http://$PUB" --rate 100 --requests 50 --duration 2s >"$WORK/budget.txt" \
  || fail "budgeted open loop exited non-zero"
grep -q "warning" "$WORK/budget.txt" && fail "budgeted open loop warned: $(cat "$WORK/budget.txt")"

# Nothing redirected (an unknown code): the run says so and exits 1, capacity 0.
rc=0
timeout 20 "$EARNBENCH" --url "http://$PUB" --code no-such-code --duration 300ms --connections 2 \
  --json "$WORK/404.json" >"$WORK/404.txt" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "a run answered only 404 exited $rc: $(cat "$WORK/404.txt")"
grep -q "no click was answered 302" "$WORK/404.txt" || fail "404 run: $(cat "$WORK/404.txt")"
python3 - "$WORK/404.json" <<'PY' || fail "404 run result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["capacity"]["rps_302"] == 0 and d["capacity"]["clicks_per_day"] == 0, d["capacity"]
assert d["errors"]["status"]["404"] == d["requests"] > 0, d["errors"]
PY

# A low open-loop rate: throughput over the whole duration (2 clicks in 2 s), not the busy part.
"$EARNBENCH" --url "http://$PUB" --duration 2s --rate 1 --connections 1 --json "$WORK/slow.json" \
  >/dev/null || fail "slow open loop exited non-zero"
python3 - "$WORK/slow.json" <<'PY' || fail "slow open-loop result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["requests"] == 2 and d["duration_s"] >= 2.0, (d["requests"], d["duration_s"])
assert 0.9 <= d["throughput_rps"] <= 1.0, d["throughput_rps"]
PY

# Ctrl-C ends a run early and it still reports what it measured (exit 130).
"$EARNBENCH" --url "http://$PUB" --duration 20s --connections 2 --json "$WORK/int.json" \
  >"$WORK/int.txt" 2>&1 &
BENCH=$!
sleep 1
kill -INT "$BENCH"
rc=0
timeout 15 tail --pid="$BENCH" -f /dev/null || fail "earnbench still running 15 s after SIGINT"
wait "$BENCH" || rc=$?
[[ $rc == 130 ]] || fail "interrupted run exited $rc: $(cat "$WORK/int.txt")"
grep -q "interrupted after" "$WORK/int.txt" || fail "interrupted run: $(cat "$WORK/int.txt")"
python3 - "$WORK/int.json" <<'PY' || fail "interrupted run result"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["interrupted"] is True and d["requests"] > 0, (d["interrupted"], d["requests"])
assert d["errors"]["total"] == 0, d["errors"]  # clicks in flight were answered, not cut off
assert d["duration_s"] < 10, d["duration_s"]
PY
refused "is an interrupted run" plan --clicks-per-day 1000 --peak-factor 2 --retention-days 30 --from-json "$WORK/int.json"

# SIGTERM stops earnd cleanly.
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[[ $rc == 0 ]] || fail "earnd exited $rc after SIGTERM"
echo "earnbench against earnd: ok"
