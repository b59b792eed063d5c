-- Put back on the persist stream the entries a writer holds that the stream
-- no longer has: Redis lost them (a wipe, a failover to a replica that
-- never got them) while the writer waited for Postgres.
-- KEYS: 1 the persist stream. ARGV: pairs of an entry's id and its frame.
-- Returns how many were put back, under new ids.
local n = 0
for i = 1, #ARGV, 2 do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 0 then
    redis.call('XADD', KEYS[1], '*', 'f', ARGV[i + 1])
    n = n + 1
  end
end
return n
