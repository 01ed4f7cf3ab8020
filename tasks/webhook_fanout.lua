-- Hand a batch of events to the receivers' outboxes, once and in stream order (tasks/webhooks.py).
-- KEYS: cursor, receivers set. ARGV: the cursor the batch was read after, the batch's last id,
-- the longest an outbox may grow, then (outbox key, receiver URL, delivery JSON) triples.
-- Only the dispatcher whose cursor is still current moves it, so no event is handed over twice.
local cursor = redis.call('GET', KEYS[1])
if cursor ~= ARGV[1] then return 0 end
local longest = tonumber(ARGV[3])
for i = 4, #ARGV, 3 do
  redis.call('RPUSH', ARGV[i], ARGV[i + 2])
  redis.call('LTRIM', ARGV[i], -longest, -1)
  redis.call('SADD', KEYS[2], ARGV[i + 1])
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
