#!/usr/bin/env bash
# A/B of conversions/s: $1 = earnd binary, $2 = label
export EARND_ADMIN_KEY=bench-admin-key-0123456789
d=$(mktemp -d); printf '[server]\nconversion_rate_per_client = 0\nconversion_rate_per_program = 0\n' > $d.toml
$1 --config $d.toml --data-dir $d --public-listen 127.0.0.1:18096 --admin-listen 127.0.0.1:18196 2>$d.log & pid=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:18096/healthz >/dev/null && break; sleep 0.1; done
key=$(curl -s -H "Authorization: Bearer $EARND_ADMIN_KEY" http://127.0.0.1:18196/v1/programs --data '{"id":"conv","name":"Conv","currency":"USD","destination":"https://example.com/","allowed_hosts":["example.com"],"rewards":[{"event":"sale","referrer":{"percent":20}}]}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["program_key"])')
echo "$2 $(EARND_PROGRAM_KEY=$key WRK_PREFIX=ab wrk -t2 -c16 -d8s -s /work/main/tools/bench/conversions.lua http://127.0.0.1:18096 | tail -1)"
kill -TERM $pid; wait $pid; rm -rf $d $d.toml $d.log
