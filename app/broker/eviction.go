package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NoEviction is the one maxmemory-policy under which Redis never drops a
// key: at maxmemory it refuses writes (sends are answered `internal`)
// instead.
const NoEviction = "noeviction"

// EvictionPolicy returns the maxmemory-policy of the Redis the broker
// writes to (the primary; on a cluster, the first policy that may evict
// among the primaries', else theirs), read from INFO memory: ElastiCache
// refuses CONFIG GET (a restricted command) but answers INFO.
func (b *Broker) EvictionPolicy(ctx context.Context) (string, error) {
	if b.cluster == nil {
		return policyOf(ctx, b.one)
	}
	var mu sync.Mutex
	policy := NoEviction
	err := b.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		p, err := policyOf(ctx, node)
		if err != nil {
			return fmt.Errorf("%s: %w", node.Options().Addr, err)
		}
		mu.Lock()
		if Evicts(p) {
			policy = p
		}
		mu.Unlock()
		return nil
	})
	return policy, err
}

func policyOf(ctx context.Context, node *redis.Client) (string, error) {
	info, err := node.Info(ctx, "memory").Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO memory: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("redis INFO memory: no maxmemory_policy field")
}

// Evicts reports whether a Redis running under policy may delete keys when
// its memory is full: every policy but noeviction. The volatile-* policies
// (ElastiCache's default is volatile-lru) pick among keys with a TTL, and
// every room key has one, so they take a room's seq state and history away
// key by key; the allkeys-* ones may take the persist stream as well.
func Evicts(policy string) bool { return policy != NoEviction }

// WatchEviction reads Redis's maxmemory-policy now and every `every` until
// ctx ends (a failover or a CONFIG SET can change it), calling report when
// it changes. While the policy may evict, every send that carries an id is
// first looked up in the persist backlog and Postgres (sentBefore): its
// dedupe key may have been evicted, and the retry of an acked send would
// otherwise be accepted again. That costs a Postgres query a send, only
// until the policy is fixed.
func (b *Broker) WatchEviction(ctx context.Context, every time.Duration, report func(policy string, evicts bool)) {
	last := ""
	for {
		if policy, err := b.EvictionPolicy(ctx); err == nil && policy != last {
			last = policy
			b.evicting.Store(Evicts(policy))
			report(policy, Evicts(policy))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
