-- Delete the per-domain guard only if this migration still holds it.
-- KEYS: guard. ARGV: migration id.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
