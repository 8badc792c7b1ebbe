-- Lists a new session in its user's index and keeps the index bounded (one key: cluster-safe).
-- KEYS[1]: sessions:user:{userId}, a sorted set of session ids scored by sign-in time (unix
-- microseconds: two sign-ins in one second still have an order).
-- ARGV[1]: the new session's id; ARGV[2]: now (unix microseconds); ARGV[3]: SESSION_MAX_AGE_SECS;
-- ARGV[4]: MAX_SESSIONS_PER_USER.
-- Returns the ids that no longer fit (the oldest first): the caller ends those sessions.
local index, id = KEYS[1], ARGV[1]
local now, max_age, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- An index written before it was a sorted set: its ids carried over as signed in now.
if redis.call('TYPE', index).ok == 'set' then
  local ids = redis.call('SMEMBERS', index)
  redis.call('DEL', index)
  for _, old in ipairs(ids) do
    redis.call('ZADD', index, now, old)
  end
end
-- Sessions past their absolute lifetime are dead whatever their key says: forget them.
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - max_age * 1000000)
redis.call('ZADD', index, now, id)
local over = redis.call('ZCARD', index) - cap
local evicted = {}
if over > 0 then
  evicted = redis.call('ZRANGE', index, 0, over - 1)
  redis.call('ZREMRANGEBYRANK', index, 0, over - 1)
end
-- No session listed here outlives its sign-in by more than max_age: nor does the index.
redis.call('EXPIRE', index, max_age)
return evicted
