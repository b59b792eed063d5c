-- Raise a room's seq limit to a newly reserved top, only when the block
-- follows the room's current one (its floor is the current limit): a block
-- that does not follow was reserved after another reservation of the room
-- (the other side of a split brain reseeded it), and counting on into it
-- would hand out that reservation's seqs a second time. Nothing is done if
-- the room was reseeded since the reservation was asked for (another epoch:
-- its own reservation holds).
-- KEYS: 1 epoch, 2 limit, 3 seq counter. ARGV: 1 the epoch the reservation
-- is for, 2 the new limit, 3 room ttl (s), 4 the block's floor, 5 a new
-- epoch to restart the room at the floor when the block does not follow
-- ("" to leave it: the room still has seqs and reserves again later).
-- Returns 0 nothing done, 1 raised, 2 restarted at the floor.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local limit = tonumber(redis.call('GET', KEYS[2]) or '0')
if limit >= tonumber(ARGV[2]) then return 0 end
if limit == tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  return 1
end
if ARGV[5] == '' then return 0 end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 2
