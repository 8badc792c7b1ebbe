-- The sync lock of one provider, held by the replica running it: change it only while it is ours.
-- KEYS[1] lock key   ARGV[1] owner token   ARGV[2] new value ("" deletes)   ARGV[3] TTL (ms)
-- Returns 1 changed | 0 not ours (its lease ran out and another replica took it)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
