-- Reserves one sign-in attempt before its password is hashed, or refuses it (throttle.rs).
-- KEYS[1] the account's consecutive failures (from clients without its device cookie)
-- KEYS[2] the failures of this account from this client (address or device)
-- ARGV[1] per-client limit   ARGV[2] per-account limit (0: not charged, a known device)
-- ARGV[3] the client's window (s)   ARGV[4] how long the account's count is kept after its last
--         failure (s): it does not renew with a window; a success clears it
-- Returns {1, 0} reserved | {0, seconds until the spent budget frees up}
-- Both keys share the account's hash tag, so on a cluster they are in one slot.
local client = tonumber(redis.call('GET', KEYS[2]) or '0')
if client >= tonumber(ARGV[1]) then
  return {0, redis.call('TTL', KEYS[2])}
end
if ARGV[2] ~= '0' then
  local account = tonumber(redis.call('GET', KEYS[1]) or '0')
  if account >= tonumber(ARGV[2]) then
    return {0, redis.call('TTL', KEYS[1])}
  end
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3], 'NX')
return {1, 0}
