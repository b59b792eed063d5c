package local

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of redis-server processes: shards primaries,
// each with one replica, as `redis-cli --cluster create` pairs them.
type Cluster struct {
	Nodes  []*Redis // the primaries at creation first, then the replicas
	shards int
}

// clusterNodeTimeout is how long a primary may be silent before its
// replica takes over: 2 s, so failovers take seconds, as with the
// local target's sentinels (Redis's default is 15 s).
const clusterNodeTimeout = 2 * time.Second

// StartCluster starts 2 × shards cluster nodes on the given ports (free
// ones where short), creates the cluster and returns once every node serves
// every slot and every replica is in sync.
func StartCluster(ctx context.Context, dir string, shards int, ports []int) (c *Cluster, err error) {
	if shards < 3 {
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 primaries, got %d", shards)
	}
	c = &Cluster{shards: shards}
	defer func() {
		if err != nil {
			c.Stop(10 * time.Second)
		}
	}()
	extra := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", itoa(int(clusterNodeTimeout.Milliseconds()))}
	addrs := make([]string, 2*shards)
	for i := range addrs {
		port := 0
		if i < len(ports) {
			port = ports[i]
		}
		n, err := startRedis(ctx, dir, fmt.Sprintf("redis-cluster-%d", i+1), portOr(port), "", extra...)
		if err != nil {
			return c, err
		}
		c.Nodes = append(c.Nodes, n)
		addrs[i] = n.Addr()
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return c, missing("redis-cli")
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	return c, c.WaitHealthy(ctx)
}

// URL is the instances' REDIS_URL: every node as a seed.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// WaitHealthy returns once every node reports the cluster ok with every
// slot served and knows every other node, and each primary has its replica
// online: what a failover or a slot move has to wait for before the next.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for {
		err := c.healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not healthy: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) healthy(ctx context.Context) error {
	primaries := 0
	for _, n := range c.Nodes {
		info, err := n.clusterInfo(ctx)
		if err != nil {
			return err
		}
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" || info["cluster_known_nodes"] != itoa(len(c.Nodes)) {
			return fmt.Errorf("%s: state %s, %s slots ok, knows %s nodes", n.Name, info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
		}
		repl, err := n.Info(ctx, "replication")
		if err != nil {
			return err
		}
		switch {
		case repl["role"] == "master" && repl["connected_slaves"] == "0":
			// A primary without slots (after a reshard) needs no replica.
			if self, err := n.ownsSlots(ctx); err != nil || self {
				return cmpErr(err, fmt.Errorf("%s: a primary without a replica", n.Name))
			}
		case repl["role"] == "master":
			primaries++
		case repl["master_link_status"] != "up":
			return fmt.Errorf("%s: replica not in sync (link %s)", n.Name, repl["master_link_status"])
		}
	}
	if primaries < c.shards {
		return fmt.Errorf("%d primaries with a replica, want %d", primaries, c.shards)
	}
	return nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func (r *Redis) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
}

// clusterInfo is CLUSTER INFO as key → value.
func (r *Redis) clusterInfo(ctx context.Context) (map[string]string, error) {
	c := r.client()
	defer c.Close()
	text, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: cluster info: %w", r.name, err)
	}
	info := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			info[k] = v
		}
	}
	return info, nil
}

// ownsSlots tells whether the node serves any slot.
func (r *Redis) ownsSlots(ctx context.Context) (bool, error) {
	c := r.client()
	defer c.Close()
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return false, fmt.Errorf("%s: cluster nodes: %w", r.name, err)
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && strings.Contains(f[2], "myself") {
			return len(f) > 8, nil
		}
	}
	return false, fmt.Errorf("%s: cluster nodes does not name itself", r.name)
}

// Primaries are the nodes that serve slots now.
func (c *Cluster) Primaries(ctx context.Context) ([]*Redis, error) {
	var out []*Redis
	for _, n := range c.Nodes {
		repl, err := n.Info(ctx, "replication")
		if err != nil {
			continue // a stopped node
		}
		if owns, err := n.ownsSlots(ctx); repl["role"] == "master" && err == nil && owns {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no node of the cluster serves slots")
	}
	return out, nil
}

// Stop stops every node gracefully (each writes its AOF and nodes.conf).
// The replicas of now go first: a primary stopping under them would be
// failed over.
func (c *Cluster) Stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, replicas := range []bool{true, false} {
		for _, n := range c.Nodes {
			repl, err := n.Info(ctx, "replication")
			if (err == nil && repl["role"] == "slave") == replicas {
				errs = append(errs, n.Stop(grace))
			}
		}
	}
	return errors.Join(errs...)
}

// Owner is the node that serves slot now.
func (c *Cluster) Owner(ctx context.Context, slot int) (*Redis, error) {
	for _, n := range c.Nodes {
		cl := n.client()
		slots, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if slot >= int(r.Start) && slot <= int(r.End) && len(r.Nodes) > 0 {
				return c.node(r.Nodes[0].Addr)
			}
		}
		return nil, fmt.Errorf("slot %d is not served", slot)
	}
	return nil, errors.New("no node of the cluster answers")
}

func (c *Cluster) node(addr string) (*Redis, error) {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s is no node of the cluster", addr)
}

func (r *Redis) id(ctx context.Context) (string, error) {
	cl := r.client()
	defer cl.Close()
	id, err := cl.ClusterMyID(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("%s: cluster myid: %w", r.name, err)
	}
	return id, nil
}

// ids are from's and to's node ids.
func ids(ctx context.Context, from, to *Redis) (fromID, toID string, err error) {
	if fromID, err = from.id(ctx); err != nil {
		return "", "", err
	}
	if toID, err = to.id(ctx); err != nil {
		return "", "", err
	}
	return fromID, toID, nil
}

// MoveSlot moves one slot to the primary to as redis-cli --cluster reshard
// moves each slot: the target imports it, the owner migrates it, its keys
// move in batches (MIGRATE), then every primary learns the new owner.
// While keys are on both sides, commands on the slot are refused with ASK
// or TRYAGAIN.
func (c *Cluster) MoveSlot(ctx context.Context, slot int, to *Redis) error {
	from, err := c.Owner(ctx, slot)
	if err != nil {
		return err
	}
	if from == to {
		return nil
	}
	fromID, toID, err := ids(ctx, from, to)
	if err != nil {
		return err
	}
	src, dst := from.client(), to.client()
	defer src.Close()
	defer dst.Close()
	if err := dst.Do(ctx, "cluster", "setslot", slot, "importing", fromID).Err(); err != nil {
		return fmt.Errorf("move slot %d: importing on %s: %w", slot, to.name, err)
	}
	if err := src.Do(ctx, "cluster", "setslot", slot, "migrating", toID).Err(); err != nil {
		return fmt.Errorf("move slot %d: migrating on %s: %w", slot, from.name, err)
	}
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 10).Result()
		if err != nil {
			return fmt.Errorf("move slot %d: keys: %w", slot, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"migrate", "127.0.0.1", to.Port, "", 0, 5000, "keys"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("move slot %d: migrate %d keys: %w", slot, len(keys), err)
		}
	}
	for _, n := range []*redis.Client{dst, src} {
		if err := n.Do(ctx, "cluster", "setslot", slot, "node", toID).Err(); err != nil {
			return fmt.Errorf("move slot %d: set its owner: %w", slot, err)
		}
	}
	return nil
}

// Start starts every stopped node again, on its port and data, and waits
// until the cluster is healthy.
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.Nodes {
		select {
		case <-n.Exited():
			if err := n.Start(ctx); err != nil {
				return err
			}
		default:
		}
	}
	return c.WaitHealthy(ctx)
}

// replicaOf is the node that replicates primary now.
func (c *Cluster) replicaOf(ctx context.Context, primary *Redis) (*Redis, error) {
	for _, n := range c.Nodes {
		repl, err := n.Info(ctx, "replication")
		if err == nil && repl["role"] == "slave" && repl["master_port"] == itoa(primary.Port) {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s has no replica", primary.Name)
}

// electionWait is how long KillPrimary waits for the cluster to elect the
// killed primary's replica (a few node timeouts as a rule) before it does
// what an operator would: CLUSTER FAILOVER TAKEOVER on the replica. Redis
// 7.0 can refuse a replica's votes for ever when its primary bumped its
// config epoch (a reshard) just before it died (valkey-io/valkey#2169), and
// a chaos run saw a shard stay down for two minutes right after a reshard
// (docs/log.md, 2026-12-07).
const electionWait = 10 * clusterNodeTimeout

// Promotion is how a killed primary's replica took over.
type Promotion struct {
	Node *Redis
	// Forced, when the replica was not elected within electionWait and
	// was made to take over, says what the nodes logged meanwhile.
	Forced string
}

// KillPrimary kills primary (SIGKILL), waits until its replica is
// promoted (elected, or made to take over: see electionWait), starts the
// killed node again (it rejoins as a replica) and returns once the cluster
// is healthy.
func (c *Cluster) KillPrimary(ctx context.Context, primary *Redis) (Promotion, error) {
	return c.killPrimary(ctx, primary, electionWait)
}

func (c *Cluster) killPrimary(ctx context.Context, primary *Redis, wait time.Duration) (Promotion, error) {
	replica, err := c.replicaOf(ctx, primary)
	if err != nil {
		return Promotion{}, err
	}
	p := Promotion{Node: replica}
	primary.Kill()
	deadline := time.Now().Add(wait)
	for {
		repl, err := replica.Info(ctx, "replication")
		if err == nil && repl["role"] == "master" {
			break
		}
		if p.Forced == "" && time.Now().After(deadline) {
			p.Forced = c.election(primary)
			cl := replica.client()
			err := cl.Do(ctx, "cluster", "failover", "takeover").Err()
			cl.Close()
			if err != nil {
				return p, fmt.Errorf("%s not elected %s after %s was killed, and CLUSTER FAILOVER TAKEOVER: %w; the nodes logged:\n%s", replica.Name, wait, primary.Name, err, p.Forced)
			}
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("%s not promoted after %s was killed: %w; the nodes logged:\n%s", replica.Name, primary.Name, ctx.Err(), c.election(primary))
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := primary.Start(ctx); err != nil {
		return p, err
	}
	return p, c.WaitHealthy(ctx)
}

// election is the last lines each node but the dead one logged: what they
// made of its failure and of its replica's election.
func (c *Cluster) election(dead *Redis) string {
	var b strings.Builder
	for _, n := range c.Nodes {
		if n != dead {
			fmt.Fprintf(&b, "%s:\n%s\n", n.Name, n.logTail(6))
		}
	}
	return b.String()
}

// Failover has primary's replica take over (CLUSTER FAILOVER: the replica
// catches up with the primary, which stops taking writes meanwhile) and
// returns once the cluster is healthy, with the promoted node.
func (c *Cluster) Failover(ctx context.Context, primary *Redis) (*Redis, error) {
	replica, err := c.replicaOf(ctx, primary)
	if err != nil {
		return nil, err
	}
	cl := replica.client()
	defer cl.Close()
	if err := cl.ClusterFailover(ctx).Err(); err != nil {
		return nil, fmt.Errorf("cluster failover on %s: %w", replica.Name, err)
	}
	for {
		repl, err := replica.Info(ctx, "replication")
		if err == nil && repl["role"] == "master" {
			return replica, c.WaitHealthy(ctx)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s not promoted by CLUSTER FAILOVER: %w", replica.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Reshard moves slots slots from one primary to another with redis-cli
// --cluster reshard, as an operator adds capacity, and returns once the
// cluster is healthy.
func (c *Cluster) Reshard(ctx context.Context, from, to *Redis, slots int) error {
	fromID, toID, err := ids(ctx, from, to)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "redis-cli", "--cluster", "reshard", from.Addr(), "--cluster-from", fromID,
		"--cluster-to", toID, "--cluster-slots", itoa(slots), "--cluster-yes").CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster reshard %d slots from %s to %s: %w: %s", slots, from.Name, to.Name, err, out)
	}
	return c.WaitHealthy(ctx)
}

// OwnedSlots is how many slots node serves now.
func (c *Cluster) OwnedSlots(ctx context.Context, node *Redis) (int, error) {
	cl := node.client()
	defer cl.Close()
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("%s: cluster slots: %w", node.name, err)
	}
	n := 0
	for _, r := range slots {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == node.Addr() {
			n += int(r.End-r.Start) + 1
		}
	}
	return n, nil
}
