-- Accept one message atomically: dedupe by the sender's id, allocate the
-- room's next seq, finish the frame, keep it in the room's bounded log (stream
-- id = seq, so resume is a range read), queue it for Postgres and publish it.
-- KEYS: seq counter, room log, dedupe key, persist stream
-- ARGV: channel, frame prefix, frame suffix, log length, dedupe ttl (s),
--       persist stream cap, accept time (unix ns), has id ("1"/"0")
if ARGV[8] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {tonumber(seen), 1} end
end
local seq = redis.call('INCR', KEYS[1])
local frame = ARGV[2] .. seq .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], seq .. '-0', 'f', frame)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'f', frame)
if ARGV[8] == '1' then
  redis.call('SET', KEYS[3], seq, 'EX', ARGV[5])
end
redis.call('PUBLISH', ARGV[1], ARGV[7] .. ' ' .. seq .. ' ' .. frame)
return {seq, 0}
