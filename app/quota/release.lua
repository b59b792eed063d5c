-- Count one connection of an incarnation less in each hash of KEYS; a field
-- that reaches 0 (or below: its count was dropped as stale meanwhile) goes.
-- ARGV: 1 the incarnation
for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 0
