# Creates the Redis Cluster of the nodes in NODES (host:port, space-
# separated), REPLICAS replicas per primary, once: while every node is still
# empty (it knows no other node and serves no slot). A cluster that exists
# is left alone, so the Job can run again at every change of its spec; one
# that exists but is not ok fails the Job, for an operator (redis-cli
# --cluster check), rather than being created over.
set -eu
: "${NODES:?NODES: the nodes, host:port ...}" "${REPLICAS:?REPLICAS: replicas per primary}"

# redis-cli --cluster create wants addresses: CLUSTER MEET takes an IP.
addrs=""
for node in $NODES; do
	host=${node%:*} port=${node##*:}
	tries=0
	until ip=$(getent hosts "$host" | awk 'NR == 1 { print $1 }') && [ -n "$ip" ] &&
		[ "$(redis-cli -h "$ip" -p "$port" ping 2>/dev/null)" = PONG ]; do
		tries=$((tries + 1))
		if [ "$tries" -ge 150 ]; then
			echo "$node does not answer PING after 5 minutes" >&2
			exit 1
		fi
		sleep 2
	done
	addrs="$addrs $ip:$port"
done

# field ADDR NAME: one line of CLUSTER INFO.
field() {
	redis-cli -h "${1%:*}" -p "${1##*:}" cluster info | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'
}

empty=0 used=""
for a in $addrs; do
	if [ "$(field "$a" cluster_known_nodes)" = 1 ] && [ "$(field "$a" cluster_slots_assigned)" = 0 ]; then
		empty=$((empty + 1))
	else
		used="$a"
	fi
done

if [ -n "$used" ]; then
	state=$(field "$used" cluster_state)
	if [ "$state" = ok ]; then
		echo "the cluster exists (cluster_state:ok at $used): nothing to do"
		exit 0
	fi
	echo "$used is in a cluster whose state is $state, and $empty of the nodes are empty: not creating over it; see redis-cli --cluster check $used" >&2
	exit 1
fi

# shellcheck disable=SC2086 # one argument per address
redis-cli --cluster create $addrs --cluster-replicas "$REPLICAS" --cluster-yes

# Done when every node reports the cluster ok.
for a in $addrs; do
	tries=0
	until [ "$(field "$a" cluster_state)" = ok ]; do
		tries=$((tries + 1))
		if [ "$tries" -ge 60 ]; then
			echo "$a: cluster_state $(field "$a" cluster_state) two minutes after the creation" >&2
			exit 1
		fi
		sleep 2
	done
done
echo "created: $(echo $addrs | wc -w) nodes, $REPLICAS replicas per primary"
