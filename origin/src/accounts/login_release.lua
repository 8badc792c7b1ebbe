-- A sign-in attempt was no failure (throttle.rs). KEYS[1] the account's consecutive failures
-- KEYS[2] this client's   ARGV[1] 1 if the account was charged   ARGV[2] 1 if the password was
-- right (a success: the account's failures are no longer consecutive, its count starts over)
-- or 0 if it was never checked (this attempt alone is given back, never below zero).
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[1] == '1' then
  local n = tonumber(redis.call('GET', KEYS[1]) or '0')
  if n > 1 then
    redis.call('DECR', KEYS[1])
  elseif n == 1 then
    redis.call('DEL', KEYS[1])
  end
end
return 1
