-- Sliding window over sub-window buckets, one hash per identity and tier.
-- KEYS[1]  the identity's hash: field = bucket index, value = requests admitted in that bucket
-- ARGV[1]  limit    ARGV[2] window (ms)    ARGV[3] bucket width (ms; divides the window)
-- ARGV[4]  tokens wanted (a lease: the caller may admit that many requests itself, within the
--          current bucket)
-- Returns  {tokens granted (0: refused), requests counted in the window after this,
--           ms until the oldest counted bucket stops counting, ms left in the current bucket}
--
-- Counted buckets cover [now - window - bucket, now], a superset of the window (now - window,
-- now], so the requests admitted in ANY window of the tier's length never exceed the limit.
-- The price: a request up to one bucket older than the window still counts (the effective
-- window is between window and window + bucket).
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
-- Redis's clock, not the caller's: every origin replica agrees on "now".
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = math.floor(now / bucket)
local span = math.ceil(window / bucket)
local first = current - span
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
local oldest = current
local stale = {}
for i = 1, #fields, 2 do
  local b = tonumber(fields[i])
  if b < first then
    stale[#stale + 1] = fields[i]
  else
    total = total + tonumber(fields[i + 1])
    if b < oldest then oldest = b end
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end
local reset = (oldest + span + 1) * bucket - now
local valid = (current + 1) * bucket - now
local grant = math.min(tonumber(ARGV[4]), limit - total)
if grant <= 0 then
  return {0, total, reset, valid}
end
redis.call('HINCRBY', KEYS[1], current, grant)
redis.call('PEXPIRE', KEYS[1], window + bucket)
return {grant, total + grant, reset, valid}
