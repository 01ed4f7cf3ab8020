-- Swap a migration record if it still holds what was read (compare by SHA-1), keep the
-- active and running sets, and append the state change to the events stream, atomically.
-- KEYS: record, active set, events, running set.
-- ARGV: SHA-1 of the expected value, new value, phase of life (0 queued, 2 admitted, 1 ended),
-- ttl, id, events maxlen, event fields.
local current = redis.call('GET', KEYS[1])
if not current or redis.sha1hex(current) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('SREM', KEYS[2], ARGV[5])
  redis.call('SREM', KEYS[4], ARGV[5])
elseif ARGV[3] == '2' then
  redis.call('SADD', KEYS[4], ARGV[5])
end
if #ARGV > 6 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7))
end
return 1
