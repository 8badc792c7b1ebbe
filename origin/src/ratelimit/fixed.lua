-- Fixed window aligned to multiples of the window length (Redis's clock), counted atomically.
-- KEYS[1]  the identity's hash: w = window index, c = requests admitted in it
-- ARGV[1]  limit    ARGV[2] window (ms)    ARGV[3] tokens wanted (a lease, within this window)
-- Returns  {tokens granted (0: refused), requests counted in this window after this,
--           ms until it ends, ms the lease is valid (the same)}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = math.floor(now / window)
local reset = (idx + 1) * window - now
local state = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if state[1] and tonumber(state[1]) == idx then
  count = tonumber(state[2])
end
local grant = math.min(tonumber(ARGV[3]), limit - count)
if grant <= 0 then
  return {0, count, reset, reset}
end
redis.call('HSET', KEYS[1], 'w', idx, 'c', count + grant)
redis.call('PEXPIRE', KEYS[1], reset)
return {grant, count + grant, reset, reset}
