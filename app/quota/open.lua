-- Count one more open connection of a user and of a client address, unless
-- either is at its limit. Connections are counted per instance incarnation
-- (one hash field each), and only the incarnations whose heartbeat is fresh
-- count: the connections of an instance that died vanish with its heartbeat.
-- KEYS: 1 incarnations (zset: incarnation -> last heartbeat, unix ms),
--       2 the user's hash, 3 the address's hash (field: incarnation, value:
--       its open connections)
-- ARGV: 1 this incarnation, 2 stale after (ms), 3 max per user (0: none),
--       4 max per address (0: none), 5 the hashes' ttl (ms)
-- Returns {0, user total, address total} when counted (totals include this
-- one), {1, user total, 0} when the user is at its limit, {2, user total,
-- address total} when the address is.
-- Redis's clock, not the instances', dates heartbeats: instances' clocks may
-- differ by more than the staleness allowed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local stale = tonumber(ARGV[2])
-- The caller is alive: it may open before its first heartbeat.
redis.call('ZADD', KEYS[1], string.format('%.0f', now), me)

local alive = {}
local function total(key)
  local n = 0
  local h = redis.call('HGETALL', key)
  for i = 1, #h, 2 do
    local inc = h[i]
    local ok = alive[inc]
    if ok == nil then
      local s = redis.call('ZSCORE', KEYS[1], inc)
      ok = (s and now - tonumber(s) <= stale) and true or false
      alive[inc] = ok
    end
    if ok then
      n = n + tonumber(h[i + 1])
    else
      -- A dead incarnation's connections are gone; its fields need not wait
      -- for the hash to expire.
      redis.call('HDEL', key, inc)
    end
  end
  return n
end

local maxUser, maxAddr = tonumber(ARGV[3]), tonumber(ARGV[4])
local u = total(KEYS[2])
if maxUser > 0 and u >= maxUser then return {1, u, 0} end
local a = total(KEYS[3])
if maxAddr > 0 and a >= maxAddr then return {2, u, a} end
for k = 2, 3 do
  redis.call('HINCRBY', KEYS[k], me, 1)
  redis.call('PEXPIRE', KEYS[k], ARGV[5])
end
return {0, u + 1, a + 1}
