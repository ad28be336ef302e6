-- wrk script for bench/ingest_single.py: one prediction per POST, every id unique.
-- Ids are "<run>-<thread>-<n>"; the id also goes out as X-Request-ID, which both servers
-- echo, so response() can tell which ids were acknowledged (2xx). done() writes them,
-- one per line, to ACKED_FILE, and a JSON summary to stdout.
local run = os.getenv("BENCH_RUN") or "r"
local path = os.getenv("BENCH_PATH") or "/v1/models/bench/predictions"
local ts = os.getenv("BENCH_TIMESTAMP") or "2026-11-20T10:30:00Z"
local auth = os.getenv("BENCH_AUTH")
local acked_file = os.getenv("ACKED_FILE") or "/tmp/wrk-acked.txt"

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  acked = {}
  pending = {}
end

function request()
  n = n + 1
  local id = run .. "-" .. tid .. "-" .. n
  local headers = { ["Content-Type"] = "application/json", ["X-Request-ID"] = id }
  if auth then headers["Authorization"] = "Bearer " .. auth end
  local body = '{"predictions":[{"prediction_id":"' .. id .. '","timestamp":"' .. ts
    .. '","score":0.' .. string.format("%03d", n % 1000) .. '}]}'
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    local id = headers["x-request-id"] or headers["X-Request-ID"]
    if id then acked[#acked + 1] = id end
  end
end

function done(summary, latency, requests)
  local f = io.open(acked_file, "w")
  local count = 0
  for _, thread in ipairs(threads) do
    local ids = thread:get("acked")
    for _, id in ipairs(ids) do
      f:write(id, "\n")
      count = count + 1
    end
  end
  f:close()
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "acked": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, count))
end
