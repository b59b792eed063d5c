package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels monitor the primary under.
const MasterName = "switchboard"

// Sentinel is a redis-sentinel process watching the primary.
type Sentinel struct {
	*Process
	Port int
}

// startSentinel writes the sentinel's config (which it rewrites as it
// learns the topology) and starts it. Quorum 2 of 3; a primary silent for a
// second is down, so failovers take seconds, not the default minute.
func startSentinel(ctx context.Context, dir string, i, port int, primary string) (*Sentinel, error) {
	name := fmt.Sprintf("sentinel-%d", i)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	host, pport, _ := strings.Cut(primary, ":")
	conf := filepath.Join(abs, name+".conf")
	body := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, abs, MasterName, host, pport, MasterName, MasterName, MasterName)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p, err := spawn(name, dir, "", nil, "redis-sentinel", conf)
	if err != nil {
		return nil, err
	}
	s := &Sentinel{Process: p, Port: port}
	if err := waitTCP(ctx, p, s.Addr()); err != nil {
		p.Kill()
		return nil, err
	}
	return s, nil
}

// Addr is host:port.
func (s *Sentinel) Addr() string { return "127.0.0.1:" + itoa(s.Port) }

// startSentinels starts a replica of t.Redis and three sentinels, and waits
// until the sentinels agree on the primary and see the replica.
func (t *Topology) startSentinels(ctx context.Context, dir string, replicaPort int, ports []int) error {
	replica, err := startRedis(ctx, dir, "redis-replica", portOr(replicaPort), t.Redis.Addr())
	if err != nil {
		return err
	}
	t.Replica = replica
	for i := range 3 {
		port := 0
		if i < len(ports) {
			port = ports[i]
		}
		s, err := startSentinel(ctx, dir, i+1, portOr(port), t.Redis.Addr())
		if err != nil {
			return err
		}
		t.Sentinels = append(t.Sentinels, s)
	}
	return t.waitSentinels(ctx, t.Redis.Addr())
}

// waitSentinels waits until every sentinel names primary and knows a
// replica and the other sentinels, so a failover can be agreed on.
func (t *Topology) waitSentinels(ctx context.Context, primary string) error {
	for {
		err := t.sentinelsAgree(ctx, primary)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sentinels not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *Topology) sentinelsAgree(ctx context.Context, primary string) error {
	for _, s := range t.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		if err != nil {
			c.Close()
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		if got := strings.Join(addr, ":"); got != primary {
			c.Close()
			return fmt.Errorf("%s names %s as primary, want %s", s.Name, got, primary)
		}
		info, err := c.Master(ctx, MasterName).Result()
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		if info["num-slaves"] == "0" || info["num-other-sentinels"] != "2" {
			return fmt.Errorf("%s sees %s replicas and %s other sentinels", s.Name, info["num-slaves"], info["num-other-sentinels"])
		}
		if strings.Contains(info["flags"], "failover") {
			return fmt.Errorf("%s: a failover under way (flags %s)", s.Name, info["flags"])
		}
	}
	return nil
}

// RedisURL is the REDIS_URL the instances use: the sentinels when the
// topology has them (redis+sentinel://), the cluster's nodes
// (redis+cluster://), else the one Redis.
func (t *Topology) RedisURL() string {
	if t.Cluster != nil {
		return t.Cluster.URL()
	}
	if len(t.Sentinels) == 0 {
		return t.Redis.URL()
	}
	addrs := make([]string, len(t.Sentinels))
	for i, s := range t.Sentinels {
		addrs[i] = s.Addr()
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + MasterName
}

// RedisNodes are the topology's Redis servers: the one Redis, the
// primary at start and its replica, or the cluster's nodes.
func (t *Topology) RedisNodes() []*Redis {
	if t.Cluster != nil {
		return t.Cluster.Nodes
	}
	if t.Replica == nil {
		return []*Redis{t.Redis}
	}
	return []*Redis{t.Redis, t.Replica}
}

// Primary is the Redis node that takes writes: what the sentinels name, or
// the one Redis.
func (t *Topology) Primary(ctx context.Context) (*Redis, error) {
	if t.Cluster != nil {
		return nil, errors.New("a Redis Cluster has a primary per shard (Cluster.Primaries)")
	}
	if len(t.Sentinels) == 0 {
		return t.Redis, nil
	}
	var last error
	for _, s := range t.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		c.Close()
		if err != nil {
			last = fmt.Errorf("%s: %w", s.Name, err)
			continue
		}
		for _, r := range t.RedisNodes() {
			if r.Addr() == strings.Join(addr, ":") {
				return r, nil
			}
		}
		return nil, fmt.Errorf("%s names %v, no node of this topology", s.Name, addr)
	}
	return nil, fmt.Errorf("no sentinel answers: %w", last)
}

// Failover has the sentinels promote the replica (SENTINEL FAILOVER) and
// returns once they all name it and it takes writes.
func (t *Topology) Failover(ctx context.Context) error {
	if len(t.Sentinels) == 0 {
		return fmt.Errorf("failover: the topology runs without sentinels (Options.Sentinel)")
	}
	old, err := t.Primary(ctx)
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	next := t.other(old)
	c := redis.NewSentinelClient(&redis.Options{Addr: t.Sentinels[0].Addr()})
	defer c.Close()
	// A Sentinel learns of a replica from the primary's INFO, every 10 s, and
	// deems it fit once it has heard from it lately: until then it answers
	// NOGOODSLAVE, sooner after a start or under load. It is asked again.
	for {
		err = c.Failover(ctx, MasterName).Err()
		if err == nil || !strings.Contains(err.Error(), "NOGOODSLAVE") {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failover: %w (until %w)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	if err := t.waitSentinels(ctx, next.Addr()); err != nil {
		return fmt.Errorf("failover to %s: %w", next.Name, err)
	}
	return nil
}

// RestartRedis stops node (SIGKILL, or SIGTERM when keepData) and starts it
// again, without its data unless keepData. With sentinels, a node that
// lost its data comes back only once they have promoted another node, and
// as its replica: a primary restarted empty before a failover would be
// replicated, emptiness and all, by its replicas ("Safety of replication
// when master has persistence turned off",
// https://redis.io/docs/latest/operate/oss_and_stack/management/replication/).
// A node restarted with its data comes back as a replica of whichever node
// they name by then, or as the primary if they still name it.
func (t *Topology) RestartRedis(ctx context.Context, node *Redis, keepData bool) error {
	if keepData {
		if err := node.Stop(10 * time.Second); err != nil {
			return err
		}
	} else {
		node.Kill()
		if err := node.Wipe(); err != nil {
			return err
		}
	}
	if len(t.Sentinels) > 0 {
		primary, err := t.Primary(ctx)
		for !keepData && (err != nil || primary == node) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("restart %s without its data: no failover: %w (last: %v)", node.Name, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
			primary, err = t.Primary(ctx)
		}
		node.replicaOf = ""
		if err == nil && primary != node {
			node.replicaOf = primary.Addr()
		}
	}
	return node.Start(ctx)
}

// HoldFailovers raises (hold) or restores the sentinels' down-after on the
// primary: held, they take an hour of silence for an outage, so a primary
// restarted meanwhile comes back as the primary.
func (t *Topology) HoldFailovers(ctx context.Context, hold bool) error {
	after := "1000" // as startSentinel configures it
	if hold {
		after = "3600000"
	}
	for _, s := range t.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		err := c.Set(ctx, MasterName, "down-after-milliseconds", after).Err()
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: sentinel set down-after-milliseconds %s: %w", s.Name, after, err)
		}
	}
	return nil
}

// WipePrimary kills the primary, deletes its data and starts it again as
// the primary, empty, with failovers held meanwhile: its replica then
// resyncs from it and loses everything too, which is the data loss
// RestartRedis avoids on purpose. It returns the node once the replica
// (with sentinels) has synced from it.
func (t *Topology) WipePrimary(ctx context.Context) (node *Redis, err error) {
	if len(t.Sentinels) > 0 {
		if err := t.HoldFailovers(ctx, true); err != nil {
			return nil, err
		}
		// Held for good, the sentinels would never fail over again.
		defer func() { err = errors.Join(err, t.HoldFailovers(context.WithoutCancel(ctx), false)) }()
	}
	// Found once failovers are held, and only once the node the sentinels
	// name says it is the primary: a failover under way (the sentinels'
	// own, down-after being a second) can leave their answer behind. A
	// chaos run saw the node it wiped come back as the other's replica and
	// resync from it, not the other way (docs/log.md, 2026-12-07).
	for {
		if node, err = t.Primary(ctx); err == nil {
			err = t.settled(ctx, node)
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wipe the primary: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	node.Kill()
	if err := node.Wipe(); err != nil {
		return node, err
	}
	node.replicaOf = "" // it may have been a replica before a failover
	if err := node.Start(ctx); err != nil {
		return node, err
	}
	if len(t.Sentinels) == 0 {
		return node, nil
	}
	replica := t.other(node)
	for {
		err := synced(ctx, node, replica)
		if err == nil {
			return node, nil
		}
		select {
		case <-ctx.Done():
			return node, fmt.Errorf("wipe %s: %s not resynced: %w (last: %v)", node.Name, replica.Name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// other is the node of the pair that n is not.
func (t *Topology) other(n *Redis) *Redis {
	if n == t.Replica {
		return t.Redis
	}
	return t.Replica
}

// settled reports whether primary is the primary by every account: every
// sentinel names it, with no failover under way, and the other node
// replicates it.
func (t *Topology) settled(ctx context.Context, primary *Redis) error {
	if err := t.sentinelsAgree(ctx, primary.Addr()); err != nil {
		return err
	}
	replica := t.other(primary)
	r, err := replica.Info(ctx, "replication")
	if err != nil {
		return err
	}
	if r["role"] != "slave" || r["master_port"] != itoa(primary.Port) {
		return fmt.Errorf("%s: role %s of port %s, not a replica of %s", replica.Name, r["role"], r["master_port"], primary.Name)
	}
	return nil
}

// synced reports whether replica replicates primary's current history (the
// same replication id, link up): after a full sync from a wiped primary.
func synced(ctx context.Context, primary, replica *Redis) error {
	p, err := primary.Info(ctx, "replication")
	if err != nil {
		return err
	}
	r, err := replica.Info(ctx, "replication")
	if err != nil {
		return err
	}
	if r["role"] != "slave" || r["master_port"] != itoa(primary.Port) || r["master_link_status"] != "up" || r["master_replid"] != p["master_replid"] {
		return fmt.Errorf("%s: role %s of port %s, link %s, replid %s (primary's %s)",
			replica.Name, r["role"], r["master_port"], r["master_link_status"], r["master_replid"], p["master_replid"])
	}
	return nil
}
