-- Forget a receiver whose outbox is empty (tasks/webhooks.py); a delivery pushed meanwhile keeps it.
-- KEYS: its outbox, the receivers set, its retry hash. ARGV: its URL.
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
