-- Settles tags the sender took (take.lua): 'done' forgets them (purged, or refused for good);
-- 'back' queues them again with their first-queued time (a failed call: they go in a later one;
-- now, if another take already moved them back). A tag queued again meanwhile keeps the earlier
-- time; a soft one is dropped if the tag is queued hard. A pause (a 429's Retry-After) moves the
-- sink's budget so no replica calls before it ends.
-- KEYS   hard set, soft set, in-flight set, budget key
-- ARGV[1] 'done' | 'back'   ARGV[2] pause ms   ARGV[3] burst ms   ARGV[4] kind   ARGV[5..] tags
local hard, soft, flight, budget = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function requeue(kind, tag, score)
  if kind == 'h' then
    redis.call('ZADD', hard, 'LT', score, tag)
    redis.call('ZREM', soft, tag)
  elseif not redis.call('ZSCORE', hard, tag) then
    redis.call('ZADD', soft, 'LT', score, tag)
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = ARGV[4]
for i = 5, #ARGV do
  local entry = kind .. '|' .. ARGV[i]
  local score = redis.call('ZSCORE', flight, entry)
  redis.call('ZREM', flight, entry)
  if ARGV[1] == 'back' then
    requeue(kind, ARGV[i], score or now)
  end
end

local pause = tonumber(ARGV[2])
if pause > 0 then
  local until_at = now + pause + tonumber(ARGV[3])
  local tat = tonumber(redis.call('GET', budget) or 0)
  if until_at > tat then
    redis.call('SET', budget, until_at, 'PX', until_at - now + 60000)
  end
end
return #ARGV - 4
