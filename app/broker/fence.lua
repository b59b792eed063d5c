-- Raise the primary's fence to a new one unless another instance raised it
-- higher already, and answer the primary's "replid|fence".
-- KEYS: 1 the fence. ARGV: 1 the new fence.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  cur = tonumber(ARGV[1])
end
local info = redis.call('INFO', 'replication')
return (string.match(info, 'master_replid:(%w+)') or '') .. '|' .. string.format('%d', cur)
