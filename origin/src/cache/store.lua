-- Fleet-wide single flight, step 2: store the loaded value and release our lock, only while the
-- lock is still ours. A mutation deletes the key and its lock together, so a load that read the
-- row before the mutation committed finds its lock gone and stores nothing (the next read loads
-- the new row); a lease that expired and was taken over stays with its new owner.
-- KEYS[1] value key   KEYS[2] lock key   ARGV[1] owner token   ARGV[2] value   ARGV[3] TTL (s)
-- Returns 1 stored | 0 not ours any more
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
