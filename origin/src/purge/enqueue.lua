-- Queues purge tags for every sink, each tag once per sink: a hard purge supersedes a queued soft
-- one of the same tag; a product's tag already covered by its queued country tag is dropped; past
-- a sink's cap (what its budget sends in a few seconds) a product's tag enters as its country's
-- tag (`prices:p:c`, which covers it: shared::tags::country_of), so the queue stays bounded and
-- overload widens a purge to one country, never to the whole catalog.
-- KEYS   per sink: its hard set, its soft set (sorted sets: tag -> first queued, ms)
-- ARGV[1] number of sinks n   ARGV[2..n+1] each sink's cap   ARGV[n+2] number of hard tags h
-- ARGV[n+3..n+2+h] hard tags   the rest: soft tags
-- Returns, per sink, how many product tags went as (or into) their country's tag.
local n = tonumber(ARGV[1])
local h = tonumber(ARGV[n + 2])
local first = n + 3
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function country(tag)
  local p, c = string.match(tag, '^price:([^:]+):([^:]+):[^:]+$')
  if not p then
    p, c = string.match(tag, '^prices%-all:([^:]+):([^:]+)$')
  end
  if p then
    return 'prices:' .. p .. ':' .. c
  end
  return nil
end

local merged = {}
for i = 1, n do
  local hard, soft = KEYS[2 * i - 1], KEYS[2 * i]
  local cap = tonumber(ARGV[1 + i])
  merged[i] = 0
  for j = first, #ARGV do
    local tag = ARGV[j]
    local is_hard = j < first + h
    -- Queued already, as strongly or more: nothing to add.
    local queued = redis.call('ZSCORE', hard, tag) or (not is_hard and redis.call('ZSCORE', soft, tag))
    if queued then
      tag = nil
    end
    local c = tag and country(tag)
    if c then
      if redis.call('ZSCORE', hard, c) or (not is_hard and redis.call('ZSCORE', soft, c)) then
        tag = nil
        merged[i] = merged[i] + 1
      elseif redis.call('ZCARD', hard) + redis.call('ZCARD', soft) >= cap then
        tag = c
        merged[i] = merged[i] + 1
      end
    end
    if tag then
      if is_hard then
        redis.call('ZADD', hard, 'NX', now, tag)
        redis.call('ZREM', soft, tag)
      elseif not redis.call('ZSCORE', hard, tag) then
        redis.call('ZADD', soft, 'NX', now, tag)
      end
    end
  end
end
return merged
