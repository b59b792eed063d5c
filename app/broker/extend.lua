-- Raise a room's seq limit to a newly reserved top, unless the room was
-- reseeded since the reservation was asked for (another epoch: its own
-- reservation holds).
-- KEYS: 1 epoch, 2 limit. ARGV: 1 the epoch the reservation is for,
-- 2 the new limit, 3 room ttl (s).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
return 1
