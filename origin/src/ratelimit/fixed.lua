-- Fixed window aligned to multiples of the window length (Redis's clock), counted atomically.
-- KEYS[1]  the identity's hash: w = window index, c = requests admitted in it
-- ARGV[1]  limit    ARGV[2] window (ms)
-- Returns  {allowed 1|0, requests counted in this window after this one, ms until it ends}
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
if count >= limit then
  return {0, count, reset}
end
redis.call('HSET', KEYS[1], 'w', idx, 'c', count + 1)
redis.call('PEXPIRE', KEYS[1], reset)
return {1, count + 1, reset}
