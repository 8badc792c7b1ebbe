-- A sign-in attempt was no failure (it succeeded, or its password was never checked): release
-- its reservation (throttle.rs). The client's count starts over; the account's loses this one
-- attempt, never going below zero.
-- KEYS[1] the account's failures   KEYS[2] this client's   ARGV[1] 1 if the account was charged
redis.call('DEL', KEYS[2])
if ARGV[1] == '1' then
  local n = tonumber(redis.call('GET', KEYS[1]) or '0')
  if n > 1 then
    redis.call('DECR', KEYS[1])
  elseif n == 1 then
    redis.call('DEL', KEYS[1])
  end
end
return 1
