-- Prints one JSON line with what the bench needs; when WRK_PATHS names a file, requests cycle
-- through its paths (one per line) instead of the URL's path.
local paths = nil
local file = os.getenv("WRK_PATHS")
if file and file ~= "" then
  paths = {}
  for line in io.lines(file) do paths[#paths + 1] = line end
end
local i = 0
request = function()
  if paths then
    i = i + 1
    return wrk.format("GET", paths[(i - 1) % #paths + 1])
  end
  return wrk.format("GET")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
