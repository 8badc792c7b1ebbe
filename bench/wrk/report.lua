-- Prints one JSON line with what the bench needs. Optional, from the environment:
--   WRK_PATHS   file of paths, one per line: requests cycle through them
--   WRK_METHOD  request method (default GET)
--   WRK_BODIES  file of request bodies, one per line (JSON), cycled
--   WRK_TOKENS  file of bearer tokens, one per line, cycled
--   WRK_ACCEPT_ENCODING  an Accept-Encoding to send (compressed catalog bodies)
local function lines(name)
  local file = os.getenv(name)
  if not file or file == "" then return nil end
  local out = {}
  for line in io.lines(file) do out[#out + 1] = line end
  return out
end
local paths, bodies, tokens = lines("WRK_PATHS"), lines("WRK_BODIES"), lines("WRK_TOKENS")
local accept_encoding = os.getenv("WRK_ACCEPT_ENCODING")
local method = os.getenv("WRK_METHOD")
if not method or method == "" then method = "GET" end
local i = 0
request = function()
  i = i + 1
  local headers = {}
  if tokens then headers["Authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1] end
  if accept_encoding and accept_encoding ~= "" then headers["Accept-Encoding"] = accept_encoding end
  local body = nil
  if bodies then
    body = bodies[(i - 1) % #bodies + 1]
    headers["Content-Type"] = "application/json"
  end
  local path = nil
  if paths then path = paths[(i - 1) % #paths + 1] end
  return wrk.format(method, path, headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
