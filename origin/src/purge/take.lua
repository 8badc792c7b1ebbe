-- The sender takes the next call's tags for one sink, within its budget: hard purges first, the
-- oldest first, at most ARGV[1]; they move to the sink's in-flight set until settled (settle.lua),
-- so a sender that dies mid-call loses none (the next take puts them back). The budget is a
-- GCRA in Redis (the sink's theoretical arrival time, on Redis's clock), so it holds for the
-- fleet across senders. Tags that waited longer than every cache keeps a copy are dropped: the
-- caches let those copies go already.
-- Only the lease's holder takes: a replica whose lease ran out (paused, partitioned, or its
-- renewal lost) takes nothing from then on, so two senders never work the queue at once.
-- KEYS   hard set, soft set, in-flight set, budget key, the sender's lease
-- ARGV[1] most tags   ARGV[2] ms between calls   ARGV[3] burst (ms ahead allowed)   ARGV[4] ms a tag may wait
-- ARGV[5] the caller's lease token
-- Returns {kind ('h', 's', 'empty', 'wait', 'lost'), wait ms, expired, still pending, oldest age ms,
-- stranded (in flight, queued again), tags...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hard, soft, flight, budget = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('GET', KEYS[5]) ~= ARGV[5] then
  return {'lost', '0', '0', '0', '0', '0'}
end

-- Whatever is in flight now belongs to no call of this sender: it takes only between its calls,
-- one at a time per sink. A holder that lost its lease mid-call, one that died, or a take whose
-- reply was lost left it there; it goes back to the queue (a duplicate purge at worst, never a
-- lost one), a hard tag superseding a queued soft one.
local stranded = redis.call('ZRANGE', flight, 0, -1, 'WITHSCORES')
for k = 1, #stranded, 2 do
  local kind, tag = string.match(stranded[k], '^(%a)|(.*)$')
  if kind == 'h' then
    redis.call('ZADD', hard, 'LT', stranded[k + 1], tag)
    redis.call('ZREM', soft, tag)
  elseif not redis.call('ZSCORE', hard, tag) then
    redis.call('ZADD', soft, 'LT', stranded[k + 1], tag)
  end
end
if #stranded > 0 then
  redis.call('DEL', flight)
end
local horizon = '(' .. tostring(now - tonumber(ARGV[4]))
local expired = redis.call('ZREMRANGEBYSCORE', hard, '-inf', horizon)
  + redis.call('ZREMRANGEBYSCORE', soft, '-inf', horizon)
local pending = redis.call('ZCARD', hard) + redis.call('ZCARD', soft)
if pending == 0 then
  return {'empty', '0', tostring(expired), '0', '0', tostring(#stranded / 2)}
end
local oldest = now
for _, set in ipairs({hard, soft}) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) < oldest then
    oldest = tonumber(first[2])
  end
end
local tat = tonumber(redis.call('GET', budget) or now)
if tat < now then
  tat = now
end
local wait = tat - now - tonumber(ARGV[3])
if wait > 0 then
  return {'wait', tostring(wait), tostring(expired), tostring(pending), tostring(now - oldest),
    tostring(#stranded / 2)}
end
local from, kind = hard, 'h'
if redis.call('ZCARD', hard) == 0 then
  from, kind = soft, 's'
end
local taken = redis.call('ZRANGE', from, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {kind, '0', tostring(expired), tostring(pending - #taken / 2), tostring(now - oldest),
  tostring(#stranded / 2)}
for k = 1, #taken, 2 do
  redis.call('ZREM', from, taken[k])
  redis.call('ZADD', flight, taken[k + 1], kind .. '|' .. taken[k])
  out[#out + 1] = taken[k]
end
local next_at = tat + tonumber(ARGV[2])
redis.call('SET', budget, next_at, 'PX', next_at - now + 60000)
return out
