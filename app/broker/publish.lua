-- Accept a batch of messages atomically, each as if alone: dedupe by the
-- sender's id, refuse when the durable queue is full, (re)seed the room's
-- counter when its state is lost, allocate the next seq below the reserved
-- limit, finish the frame, keep it in the room's bounded log (stream id =
-- seq, so resume is a range read), queue it for Postgres and publish it.
-- One run for the batch pays the script's call and INFO once rather than
-- per message, and what all its messages share is passed once: Redis makes
-- a string of every argument, about 0.1 us each (redis-benchmark, docs/log.md).
-- KEYS: 1 the persist stream, 2 the primary's fence (the Redis's, or on a
--       cluster the partition's, the same for every message of a run);
--       then 8 per message: +1 seq counter, +2 epoch, +3 room log, +4 dedupe
--       key, +5 the marker the room was seeded under ("replid|fence"), +6
--       the reserved limit, +7 until when a missing dedupe key must be
--       checked in Postgres, +8 the room's seeding lock
-- ARGV: 1 log length, 2 dedupe ttl (s), 3 room ttl (s), 4 persist backlog
--       cap, 5 replicas that must be online (REDIS_MIN_REPLICAS), 6 the
--       replication id the instance last wrote under ("" none yet), 7 the
--       newest fence the instance has seen, 8 the publish command (PUBLISH,
--       or SPUBLISH to a cluster's sharded channel); then 11 per message:
--       +1 channel, +2 frame prefix, +3 frame suffix, +4 accept time (unix
--       ns), +5 has id ("1"/"0"), +6 reseed floor ("" when not reserved
--       yet), +7 epoch, +8 limit and +9 recheck deadline (unix ns, 0 for
--       none) for a reseed, +10 "1" when Postgres was checked for the id
--       already, +11 what the payload carries before the frame ("" or, on a
--       partition's channel, "<room> ")
-- Returns one reply per message: an error (OVERLOADED, NOREPLICAS: nothing
-- of it written) or {seq, status, epoch, headroom, marker}: status 0 accepted,
-- 1 duplicate (the original seq and epoch), 2 the room must be reseeded
-- (seq: its counter here; the caller now holds the seeding lock), 3 its
-- reserved seqs ran out (seq: its counter), 4 the id must be looked up in
-- Postgres first, 5 another sender is reseeding the room: look again shortly,
-- 6 the room's last reservation failed a moment ago: refuse for now, 7 the
-- primary changed and may be a stale one: fence it first (nothing written).

-- A new replication id means a failover or a restart: this primary may lack
-- the newest writes of the previous one, so the counter cannot be trusted.
-- Plain finds: Lua's pattern matching over INFO's kilobyte cost more than
-- the rest of a send (callgrind, docs/log.md 2026-12-06).
local info = redis.call('INFO', 'replication')
local replid = ''
local _, at = string.find(info, 'master_replid:', 1, true)
if at then replid = string.sub(info, at + 1, (string.find(info, '\r', at, true) or 0) - 1) end
-- Replicas online, counted only for a send that needs them.
local online
local function replicas()
  if not online then
    online = 0
    local from = 1
    while true do
      from = string.find(info, 'state=online', from, true)
      if not from then break end
      online, from = online + 1, from + 12
    end
  end
  return online
end
-- The stream holds only entries not yet written to Postgres (the writers
-- delete what they stored), so its length is the backlog.
local backlog = redis.call('XLEN', KEYS[1])
-- A fence, from a sequence in Postgres, is set on a primary by the first
-- instance that writes to it after writing to another. A primary that was
-- replaced and comes back as primary without a resync (a quick second
-- failover, a split brain) keeps its replication id and its rooms as they
-- were, some of them reseeded elsewhere since: its fence is then older than
-- one the instance has seen, and a new fence makes every room reseed above
-- everything reserved meanwhile, instead of counting on from its old state.
local fence = redis.call('GET', KEYS[2]) or '0'
-- The replication id alone until a primary is first fenced, as rooms were
-- marked before fences: instances of both versions agree during a rollout.
local marker = replid
if fence ~= '0' then marker = replid .. '|' .. fence end
local stale = ARGV[6] ~= '' and ARGV[6] ~= replid and tonumber(fence) <= tonumber(ARGV[7])
local cap, need = tonumber(ARGV[4]), tonumber(ARGV[5])
local renewBelow = (tonumber(ARGV[3]) + tonumber(ARGV[2])) / 2

local function publish(k, a)
  if stale then return {0, 7, '', 0, marker} end
  local now = tonumber(ARGV[a + 4])
  -- The room's state and the sender's dedupe key in one read: seq, epoch,
  -- limit, replid, recheck, dedupe (a missing key when the send has no id).
  local room = redis.call('MGET', KEYS[k + 1], KEYS[k + 2], KEYS[k + 6], KEYS[k + 5], KEYS[k + 7], KEYS[k + 4])
  if ARGV[a + 5] == '1' then
    local seen = room[6]
    if seen then
      local seq, epoch = string.match(seen, '^(%d+)/(.*)$')
      if not seq then seq, epoch = seen, '' end -- stored before rooms had epochs
      return {tonumber(seq), 1, epoch, 0, marker}
    end
    -- Shortly after a reseed a retry may find its key gone with the old state.
    if ARGV[a + 10] ~= '1' and tonumber(room[5] or '0') > now then
      return {0, 4, '', 0, marker}
    end
  end
  if backlog >= cap then
    return redis.error_reply('OVERLOADED persist backlog reached its cap of ' .. ARGV[4])
  end
  -- A primary without its replicas may be the loser of a failover that its
  -- sentinels have not demoted yet: writing here would fork the room's
  -- history, and the winner's acks could be reused when this node is promoted
  -- back (no new replication id then). Refuse before writing anything.
  if need > 0 and replicas() < need then
    return redis.error_reply('NOREPLICAS ' .. replicas() .. ' of ' .. need .. ' replicas online')
  end
  local cur = tonumber(room[1] or '0')
  local epoch = room[2]
  local limit = tonumber(room[3] or '0')
  if not room[1] or not epoch or limit == 0 or room[4] ~= marker then
    -- The room is new, expired, lost a key (an eviction takes one key at a
    -- time: a counter gone under a surviving epoch would restart at 1) or
    -- may have lost writes: its counter restarts at the floor of a fresh
    -- reservation, above every seq it ever had.
    if ARGV[a + 6] == '' then
      -- One sender at a time, of every instance, reserves for the room, so
      -- its concurrent first sends share one block and a new room starts at 1.
      if redis.call('SET', KEYS[k + 8], '1', 'NX', 'PX', 2000) then return {cur, 2, '', 0, marker} end
      -- 'failed': the last reservation failed (Postgres down) moments ago.
      if redis.call('GET', KEYS[k + 8]) == 'failed' then return {cur, 6, '', 0, marker} end
      return {cur, 5, '', 0, marker}
    end
    cur = math.max(cur, tonumber(ARGV[a + 6]))
    limit = tonumber(ARGV[a + 8])
    epoch = ARGV[a + 7]
    redis.call('SET', KEYS[k + 1], string.format('%d', cur))
    redis.call('SET', KEYS[k + 2], epoch)
    redis.call('SET', KEYS[k + 5], marker)
    redis.call('SET', KEYS[k + 6], string.format('%d', limit))
    redis.call('DEL', KEYS[k + 8])
    if tonumber(ARGV[a + 9]) > now then
      redis.call('SET', KEYS[k + 7], ARGV[a + 9], 'PXAT', math.floor(tonumber(ARGV[a + 9]) / 1000000))
    end
  end
  if cur >= limit then return {cur, 3, epoch, 0, marker} end
  local seq = redis.call('INCR', KEYS[k + 1])
  -- A number is formatted each time it is joined to a string (sprintf): once.
  local s = tostring(seq)
  local frame = ARGV[a + 2] .. s .. ARGV[a + 3]
  redis.call('XADD', KEYS[k + 3], 'MAXLEN', ARGV[1], s .. '-0', 'f', frame)
  redis.call('XADD', KEYS[1], '*', 'f', frame)
  backlog = backlog + 1
  if ARGV[a + 5] == '1' then
    redis.call('SET', KEYS[k + 4], s .. '/' .. epoch, 'EX', ARGV[2])
  end
  -- Room names are client-chosen: an idle room's keys expire. The room TTL
  -- outlives every dedupe key, and the next send after expiry reseeds with a
  -- new epoch, so no seq is reused. The five TTLs are renewed together once
  -- the counter's falls below halfway from the room TTL to the dedupe TTL
  -- (a reseed's SET clears it: -1), not on every send: the keys then
  -- always outlive a dedupe key set now.
  local ttl = redis.call('TTL', KEYS[k + 1])
  if ttl < renewBelow then
    for _, i in ipairs({1, 2, 3, 5, 6}) do redis.call('EXPIRE', KEYS[k + i], ARGV[3]) end
  end
  redis.call(ARGV[8], ARGV[a + 1], ARGV[a + 4] .. ' ' .. s .. ' ' .. ARGV[a + 11] .. frame)
  return {seq, 0, epoch, limit - seq, marker}
end

local replies = {}
for i = 0, (#KEYS - 2) / 8 - 1 do
  replies[i + 1] = publish(2 + 8 * i, 8 + 11 * i)
end
return replies
