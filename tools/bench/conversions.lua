-- wrk script: POST /v1/conversions with a new event id per request (signups, unattributed unless
-- a click id is given), keep-alive. Env: EARND_PROGRAM_KEY (required), WRK_PREFIX (event id prefix).
local key = os.getenv("EARND_PROGRAM_KEY")
local prefix = os.getenv("WRK_PREFIX") or "wrk"
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
  created, duplicate, other = 0, 0, 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"event_id":"%s-%d-%d","type":"sale","customer_id":"c%d","amount_minor":1999,"currency":"USD"}',
    prefix, tid, counter, counter)
  return wrk.format(nil, "/v1/conversions", nil, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 200 then duplicate = duplicate + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local c, d, o = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); d = d + t:get("duplicate"); o = o + t:get("other")
  end
  io.write(string.format("RESULT conv_per_s=%.0f p50_us=%d p99_us=%d created=%d duplicate=%d other=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), c, d, o))
end
