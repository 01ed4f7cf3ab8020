-- Admit what fits of the candidates, in their order, under the limits (tasks/admission.py).
-- KEYS: slots, queue. ARGV: limits JSON, candidates JSON (in order), only-if-queue-empty flag.
local limits = cjson.decode(ARGV[1])
local candidates = cjson.decode(ARGV[2])
if ARGV[3] == '1' and redis.call('HLEN', KEYS[2]) > 0 then return {} end
local out, inn, bw_out, bw_in, total = {}, {}, {}, {}, 0
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  local s = cjson.decode(raw)
  out[s.source] = (out[s.source] or 0) + 1
  inn[s.destination] = (inn[s.destination] or 0) + 1
  bw_out[s.source] = (bw_out[s.source] or 0) + s.bandwidth
  bw_in[s.destination] = (bw_in[s.destination] or 0) + s.bandwidth
  total = total + 1
end
local admitted = {}
for _, c in ipairs(candidates) do
  if total >= limits.fleet then break end
  local budget = limits.bandwidth_per_host
  local fits = (out[c.source] or 0) < limits.outbound_per_host
    and (inn[c.destination] or 0) < limits.inbound_per_host
    and redis.call('HEXISTS', KEYS[1], c.id) == 0
  if fits and budget > 0 then
    fits = (bw_out[c.source] or 0) + c.bandwidth <= budget
      and (bw_in[c.destination] or 0) + c.bandwidth <= budget
  end
  if fits then
    redis.call('HSET', KEYS[1], c.id, cjson.encode(c))
    redis.call('HDEL', KEYS[2], c.id)
    out[c.source] = (out[c.source] or 0) + 1
    inn[c.destination] = (inn[c.destination] or 0) + 1
    bw_out[c.source] = (bw_out[c.source] or 0) + c.bandwidth
    bw_in[c.destination] = (bw_in[c.destination] or 0) + c.bandwidth
    total = total + 1
    table.insert(admitted, c.id)
  end
end
return admitted
