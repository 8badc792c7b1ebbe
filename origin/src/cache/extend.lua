-- Fleet-wide single flight, while loading: renew our fill lock's lease, only while it is still
-- ours, so a load slower than the lease is not taken over (and run again) by a waiter, while a
-- holder that died stops renewing and its lease runs out as before.
-- KEYS[1] lock key   ARGV[1] owner token   ARGV[2] lease (ms)
-- Returns 1 renewed | 0 not ours any more
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
