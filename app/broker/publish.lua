-- Accept one message atomically: dedupe by the sender's id, refuse when the
-- durable queue is full, (re)seed the room's counter when its state is lost,
-- allocate the next seq below the reserved limit, finish the frame, keep it
-- in the room's bounded log (stream id = seq, so resume is a range read),
-- queue it for Postgres and publish it.
-- KEYS: 1 seq counter, 2 epoch, 3 room log, 4 dedupe key, 5 persist stream,
--       6 the replication id the room was seeded under, 7 the reserved
--       limit, 8 until when a missing dedupe key must be checked in Postgres,
--       9 the room's seeding lock
-- ARGV: 1 channel, 2 frame prefix, 3 frame suffix, 4 log length,
--       5 dedupe ttl (s), 6 room ttl (s), 7 persist backlog cap,
--       8 accept time (unix ns), 9 has id ("1"/"0"), 10 reseed floor ("" when
--       not reserved yet), 11 epoch, 12 limit and 13 recheck deadline (unix
--       ns, 0 for none) for a reseed, 14 "1" when Postgres was checked for
--       the id already, 15 replicas that must be online (REDIS_MIN_REPLICAS)
-- Returns {seq, status, epoch, headroom}: status 0 accepted, 1 duplicate
-- (the original seq and epoch), 2 the room must be reseeded (seq: its
-- counter here; the caller now holds the seeding lock), 3 its reserved seqs
-- ran out (seq: its counter), 4 the id must be looked up in Postgres first,
-- 5 another sender is reseeding the room: look again shortly.
local now = tonumber(ARGV[8])
if ARGV[9] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local seq, epoch = string.match(seen, '^(%d+)/(.*)$')
    if not seq then seq, epoch = seen, '' end -- stored before rooms had epochs
    return {tonumber(seq), 1, epoch, 0}
  end
  -- Shortly after a reseed a retry may find its key gone with the old state.
  if ARGV[14] ~= '1' and tonumber(redis.call('GET', KEYS[8]) or '0') > now then
    return {0, 4, '', 0}
  end
end
-- The stream holds only entries not yet written to Postgres (the writers
-- delete what they stored), so its length is the backlog.
if redis.call('XLEN', KEYS[5]) >= tonumber(ARGV[7]) then
  return redis.error_reply('OVERLOADED persist backlog reached its cap of ' .. ARGV[7])
end
-- A new replication id means a failover or a restart: this primary may lack
-- the newest writes of the previous one, so the counter cannot be trusted.
local info = redis.call('INFO', 'replication')
local replid = string.match(info, 'master_replid:(%w+)') or ''
-- A primary without its replicas may be the loser of a failover that its
-- sentinels have not demoted yet: writing here would fork the room's
-- history, and the winner's acks could be reused when this node is promoted
-- back (no new replication id then). Refuse before writing anything.
local need = tonumber(ARGV[15])
if need > 0 then
  local online = 0
  for _ in string.gmatch(info, 'state=online') do online = online + 1 end
  if online < need then
    return redis.error_reply('NOREPLICAS ' .. online .. ' of ' .. need .. ' replicas online')
  end
end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
local limit = tonumber(redis.call('GET', KEYS[7]) or '0')
if not epoch or limit == 0 or redis.call('GET', KEYS[6]) ~= replid then
  -- The room is new, expired or may have lost writes: its counter restarts
  -- at the floor of a fresh reservation, above every seq it ever had.
  if ARGV[10] == '' then
    -- One sender at a time, of every instance, reserves for the room, so
    -- its concurrent first sends share one block and a new room starts at 1.
    if redis.call('SET', KEYS[9], '1', 'NX', 'PX', 2000) then return {cur, 2, '', 0} end
    return {cur, 5, '', 0}
  end
  cur = math.max(cur, tonumber(ARGV[10]))
  limit = tonumber(ARGV[12])
  epoch = ARGV[11]
  redis.call('SET', KEYS[1], string.format('%d', cur))
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[6], replid)
  redis.call('SET', KEYS[7], string.format('%d', limit))
  redis.call('DEL', KEYS[9])
  if tonumber(ARGV[13]) > now then
    redis.call('SET', KEYS[8], ARGV[13], 'PXAT', math.floor(tonumber(ARGV[13]) / 1000000))
  end
end
if cur >= limit then return {cur, 3, epoch, 0} end
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
for _, i in ipairs({1, 2, 3, 6, 7}) do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
redis.call('PUBLISH', ARGV[1], ARGV[8] .. ' ' .. seq .. ' ' .. frame)
return {seq, 0, epoch, limit - seq}
