-- Refresh ahead, step 2: store the reloaded value only if our lock is still there. A mutation
-- deletes the key and its lock together, so a refresh that loaded before the mutation committed
-- never puts the old value back.
-- KEYS[1] value key   KEYS[2] lock key   ARGV[1] owner token   ARGV[2] value   ARGV[3] TTL (s)
-- Returns 1 stored | 0 not ours any more
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
