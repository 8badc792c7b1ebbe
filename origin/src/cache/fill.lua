-- Fleet-wide single flight, step 1: the value if someone stored it, else the fill lock.
-- KEYS[1] value key   KEYS[2] lock key   ARGV[1] owner token   ARGV[2] lock lease (ms)
-- Returns {1, value} | {2} (lock taken: load it) | {0} (another process is loading: wait)
local v = redis.call('GET', KEYS[1])
if v then
  return {1, v}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
