-- Reads or edits one user's session index, whichever type it was written as (a set before the
-- sorted set; one key: cluster-safe).
-- KEYS[1]: sessions:user:{userId}. ARGV[1]: 'members' (returns every id) or 'remove' (ARGV[2]:
-- the id to drop).
local index, op = KEYS[1], ARGV[1]
local kind = redis.call('TYPE', index).ok
if op == 'members' then
  if kind == 'set' then return redis.call('SMEMBERS', index) end
  if kind == 'zset' then return redis.call('ZRANGE', index, 0, -1) end
  return {}
end
if kind == 'set' then return redis.call('SREM', index, ARGV[2]) end
if kind == 'zset' then return redis.call('ZREM', index, ARGV[2]) end
return 0
