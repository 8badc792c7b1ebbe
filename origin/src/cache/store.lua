-- Fleet-wide single flight, step 2: store the loaded value and release our lock (only ours:
-- a lease that expired and was taken over stays with its new owner).
-- KEYS[1] value key   KEYS[2] lock key   ARGV[1] owner token   ARGV[2] value   ARGV[3] TTL (s)
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
