-- Create a migration record with its indexes, its first event and (queued or waiting) its queue
-- entry, all at once (tasks/store.py): a crash or a Redis failover never leaves a record that no
-- index, queue or sweeper knows of.
-- KEYS: record, migrations, not-ended, events, admitted, queue, queue line, queue lines,
-- queue deadlines.
-- ARGV: record JSON, created (epoch), admitted ('1'/'0'), id, events maxlen, queue entry JSON
-- ('' when not queued), queue line name, line score, deadline ('0': none), event fields...
local current = redis.call('GET', KEYS[1])
if current then
  if current == ARGV[1] then return 1 end  -- this very call, sent again after its answer was lost
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[3] == '1' then redis.call('SADD', KEYS[5], ARGV[4]) end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[4], ARGV[6])
  redis.call('ZADD', KEYS[7], ARGV[8], ARGV[4])
  redis.call('SADD', KEYS[8], ARGV[7])
  if ARGV[9] ~= '0' then redis.call('ZADD', KEYS[9], ARGV[9], ARGV[4]) end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 10))
return 1
