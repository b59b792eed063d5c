-- Mark an incarnation alive now (Redis's clock, as open.lua reads it) and
-- forget incarnations silent for longer than ARGV[2] ms.
-- KEYS: 1 incarnations (zset); ARGV: 1 the incarnation, 2 forget after (ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - tonumber(ARGV[2])))
return 0
