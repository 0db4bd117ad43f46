-- wrk script of `make bench`: persisted GETs from 500 directors, each with their own token.
--
-- BENCH_REQUESTS names a file of requests, one per line: "<path?query>\t<bearer token>", or
-- "POST <path>\t<bearer token>\t<JSON body>" for a POST. BENCH_ACCEPT_ENCODING, when set,
-- is sent as every request's Accept-Encoding.
-- Every thread pre-formats all of them once (no string building per request) and cycles
-- through them, starting at its own offset. done() writes a JSON summary to BENCH_WRK_OUT.
-- No response() callback: defining one makes wrk hand every response to Lua, which would
-- slow the generator; wrk itself counts statuses >= 400 as errors.

local requests_file = os.getenv("BENCH_REQUESTS")
local out_file = os.getenv("BENCH_WRK_OUT")
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local accept_encoding = os.getenv("BENCH_ACCEPT_ENCODING")

function init(args)
  reqs = {}
  for line in io.lines(requests_file) do
    local post_path, post_token, body = line:match("^POST (%S+)\t(%S+)\t(.+)$")
    local headers = {}
    if accept_encoding and accept_encoding ~= "" then
      headers["Accept-Encoding"] = accept_encoding
    end
    if post_path then
      headers["Authorization"] = "Bearer " .. post_token
      headers["Content-Type"] = "application/json"
      reqs[#reqs + 1] = wrk.format("POST", post_path, headers, body)
    else
      local path, token = line:match("^(%S+)\t(%S+)$")
      if path then
        headers["Authorization"] = "Bearer " .. token
        reqs[#reqs + 1] = wrk.format("GET", path, headers)
      end
    end
  end
  count = #reqs
  if count == 0 then
    error("no requests in " .. tostring(requests_file))
  end
  position = (thread_index * 104729) % count
end

function request()
  position = position + 1
  if position > count then
    position = 1
  end
  return reqs[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  local quantiles = { 50, 75, 90, 95, 99, 99.9 }
  local parts = {}
  for _, q in ipairs(quantiles) do
    parts[#parts + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  local f = assert(io.open(out_file, "w"))
  f:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.3f, "stdev": %.3f, "percentiles": {%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(parts, ", ")))
  f:close()
end
