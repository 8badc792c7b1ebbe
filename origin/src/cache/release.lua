-- Fleet-wide single flight, on a failed load: release our fill lock (only ours: a lease that
-- expired and was taken over stays with its new owner), so waiters load at once instead of
-- waiting out the lease.
-- KEYS[1] lock key   ARGV[1] owner token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
