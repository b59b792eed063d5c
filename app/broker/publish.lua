-- Accept one message atomically: dedupe by the sender's id, refuse when the
-- durable queue is full, (re)seed the room's counter when its state is lost,
-- allocate the next seq, finish the frame, keep it in the room's bounded log
-- (stream id = seq, so resume is a range read), queue it for Postgres and
-- publish it.
-- KEYS: seq counter, epoch, room log, dedupe key, persist stream, the
--       replication id the room's counter was seeded under
-- ARGV: 1 channel, 2 frame prefix, 3 frame suffix, 4 log length,
--       5 dedupe ttl (s), 6 room ttl (s), 7 persist backlog cap,
--       8 accept time (unix ns), 9 has id ("1"/"0"),
--       10 reseed floor ("" when not known yet), 11 epoch for a reseed
-- Returns {seq, status, epoch}: status 0 accepted, 1 duplicate (the original
-- seq and epoch), 2 the room must be reseeded: call again with a floor.
if ARGV[9] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local seq, epoch = string.match(seen, '^(%d+)/(.*)$')
    if not seq then seq, epoch = seen, '' end -- stored before rooms had epochs
    return {tonumber(seq), 1, epoch}
  end
end
-- The stream holds only entries not yet written to Postgres (the writers
-- delete what they stored), so its length is the backlog.
if redis.call('XLEN', KEYS[5]) >= tonumber(ARGV[7]) then
  return redis.error_reply('OVERLOADED persist backlog reached its cap of ' .. ARGV[7])
end
-- A new replication id means a failover or a restart: this primary may lack
-- the newest writes of the previous one, so the counter cannot be trusted.
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 or redis.call('GET', KEYS[6]) ~= replid then
  -- Counter, epoch or primary changed: the room is new, expired or may have
  -- lost writes. Its counter restarts above every seq that may have been acked.
  if ARGV[10] == '' then return {0, 2, ''} end
  local floor = tonumber(ARGV[10])
  if tonumber(redis.call('GET', KEYS[1]) or '0') < floor then
    redis.call('SET', KEYS[1], floor)
  end
  epoch = ARGV[11]
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[6], replid)
end
local seq = redis.call('INCR', KEYS[1])
local frame = ARGV[2] .. seq .. ARGV[3]
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], seq .. '-0', 'f', frame)
redis.call('XADD', KEYS[5], '*', 'f', frame)
if ARGV[9] == '1' then
  redis.call('SET', KEYS[4], seq .. '/' .. epoch, 'EX', ARGV[5])
end
-- Room names are client-chosen: an idle room's keys expire. The room TTL
-- outlives every dedupe key, and the next send after expiry reseeds with a
-- new epoch, so no seq is reused.
for _, i in ipairs({1, 2, 3, 6}) do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
redis.call('PUBLISH', ARGV[1], ARGV[8] .. ' ' .. seq .. ' ' .. frame)
return {seq, 0, epoch}
