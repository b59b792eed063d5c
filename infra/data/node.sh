# A Redis Cluster node: redis-server with the arguments given, after
# pointing nodes.conf at the peers' current addresses. The cluster bus
# dials the IPs nodes.conf keeps, and a pod's IP changes when it restarts:
# one restarted pod is found again (it dials the others, which learn its new
# address), but pods that all restart at once would each keep only stale
# IPs. Each peer's line carries its stable hostname (cluster-announce-
# hostname), so its address is resolved again here; a name not yet in DNS
# keeps its old address, and that peer, once up, dials this node itself.
#
# A replica waits (up to a minute) for its primary's name first: Redis
# 7.0.15 takes the address it replicates from out of nodes.conf at start,
# and did not follow the primary's new address once the cluster bus knew it
# (seen on kind: after every pod restarted at once, a replica replicated
# from its primary's old IP, link down, for minutes, and the shard refused
# every send that waits for a replica's ack).
set -eu
conf="${CLUSTER_CONFIG:-/data/nodes.conf}"
if [ -s "$conf" ]; then
	primary=$(awk '$3 ~ /myself/ && $3 ~ /slave/ { print $4 }' "$conf")
	host=$(awk -v id="$primary" '$1 == id { split($2, field, ","); print field[2] }' "$conf")
	tries=0
	while [ -n "$host" ] && ! getent hosts "$host" >/dev/null && [ "$tries" -lt 60 ]; do
		tries=$((tries + 1))
		sleep 1
	done
	awk '
	# <id> <ip:port@cport[,hostname[,aux=value...]]> <flags> ...
	NF >= 2 {
		split($2, field, ",")
		host = field[2]
		if (host != "" && host !~ /=/) {
			ip = ""
			cmd = "getent hosts " host
			if ((cmd | getline answer) > 0) {
				split(answer, words, " ")
				ip = words[1]
			}
			close(cmd)
			if (ip ~ /^[0-9.]+$/) {
				sub(/^[^:]*/, ip, $2)
			}
		}
	}
	{ print }' "$conf" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
fi
exec redis-server "$@" --cluster-config-file "$conf"
