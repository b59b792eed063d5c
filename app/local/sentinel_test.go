package local

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis faults the chaos test injects do what they say: a Sentinel
// failover moves the primary to the replica with the data, a restart keeps
// the data and a restart without it comes back empty, as a replica of the
// new primary.
func TestSentinelFailoverAndRedisRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	top := startSentinelTopology(ctx, t)
	keyOn := func(r *Redis) string {
		c := redis.NewClient(&redis.Options{Addr: r.Addr()})
		defer c.Close()
		v, _ := c.Get(ctx, "k").Result()
		return v
	}
	first := redis.NewClient(&redis.Options{Addr: top.Redis.Addr()})
	if err := first.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT: the replica has it before the failover is asked for.
	if n, err := first.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	first.Close()

	if err := top.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	primary, err := top.Primary(ctx)
	if err != nil || primary != top.Replica {
		t.Fatalf("primary after the failover: %v, %v; want the replica", primary, err)
	}
	if v := keyOn(primary); v != "v" {
		t.Fatalf("the new primary has k=%q, want v", v)
	}

	if err := top.RestartRedis(ctx, primary, true); err != nil {
		t.Fatal(err)
	}
	if v := keyOn(primary); v != "v" {
		t.Fatalf("after a restart with its data k=%q, want v", v)
	}

	old := top.Redis
	if err := top.RestartRedis(ctx, old, false); err != nil {
		t.Fatal(err)
	}
	if old.replicaOf != top.Replica.Addr() {
		t.Fatal("the wiped old primary came back as a primary; want a replica of the new one")
	}
	if err := top.waitSentinels(ctx, top.Replica.Addr()); err != nil {
		t.Fatal(err)
	}

	// The primary itself loses its data, once the wiped node has synced
	// again: the sentinels fail over to it, with the key, before the empty
	// node returns.
	// A full resync starts after repl-diskless-sync-delay (5 s) and then
	// transfers and loads the data: allow it 30 s on a busy machine, with
	// failovers held meanwhile: under make test's load beside the e2e,
	// the sentinels once took the primary for down (1 s down-after)
	// during the resync and failed over to the node still syncing, and
	// WAIT then met a replica.
	if err := top.HoldFailovers(ctx, true); err != nil {
		t.Fatal(err)
	}
	synced := redis.NewClient(&redis.Options{Addr: top.Replica.Addr()})
	if n, err := synced.Wait(ctx, 1, 30*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 after the resync: %d, %v", n, err)
	}
	synced.Close()
	if err := top.HoldFailovers(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := top.RestartRedis(ctx, top.Replica, false); err != nil {
		t.Fatal(err)
	}
	if primary, err := top.Primary(ctx); err != nil || primary != top.Redis {
		t.Fatalf("primary after the primary lost its data: %v, %v; want the other node", primary, err)
	}
	if v := keyOn(top.Redis); v != "v" {
		t.Fatalf("after the primary lost its data the new primary has k=%q, want v", v)
	}
}

// The chaos test's data-loss faults do what they say: a primary wiped with
// failovers held stays the primary and its replica resyncs to nothing; a
// maxmemory just above what is used, with volatile-lru, evicts keys with a
// TTL as writes come in, and the defaults restore the limit.
func TestWipePrimaryAndEviction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	top := startSentinelTopology(ctx, t)
	c := redis.NewClient(&redis.Options{Addr: top.Redis.Addr()})
	defer c.Close()
	for i := range 200 {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), strings.Repeat("v", 1000), time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	info, err := top.Redis.Info(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	used, _ := strconv.ParseInt(info["used_memory"], 10, 64)
	if err := top.Redis.SetMaxmemory(ctx, used+50_000, "volatile-lru"); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := c.Set(ctx, fmt.Sprintf("n%d", i), strings.Repeat("v", 1000), time.Hour).Err(); err != nil {
			t.Fatalf("a write under volatile-lru: %v", err)
		}
	}
	stats, err := top.Redis.Info(ctx, "stats")
	if err != nil || stats["evicted_keys"] == "0" {
		t.Fatalf("evicted_keys %q, %v; want some", stats["evicted_keys"], err)
	}
	if err := top.Redis.SetMaxmemory(ctx, 0, "noeviction"); err != nil {
		t.Fatal(err)
	}
	if got := c.ConfigGet(ctx, "maxmemory*").Val(); got["maxmemory"] != "0" || got["maxmemory-policy"] != "noeviction" {
		t.Fatalf("restored %v", got)
	}

	if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	wiped, err := top.WipePrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if primary, err := top.Primary(ctx); err != nil || wiped != top.Redis || primary != top.Redis {
		t.Fatalf("after the wipe the primary is %v (%v), wiped %v; want the same node", primary, err, wiped)
	}
	for _, r := range []*Redis{top.Redis, top.Replica} {
		if info, err := r.Info(ctx, "keyspace"); err != nil || len(info) != 0 {
			t.Fatalf("%s after the wipe: keyspace %v, %v; want empty", r.Name, info, err)
		}
	}
	if err := top.waitSentinels(ctx, top.Redis.Addr()); err != nil {
		t.Fatal(err)
	}
}

// startSentinelTopology starts a primary, its replica and the sentinels
// watching them, stopped when the test ends.
func startSentinelTopology(ctx context.Context, t *testing.T) *Topology {
	t.Helper()
	dir := t.TempDir()
	top := &Topology{dir: dir}
	t.Cleanup(func() { top.Down() })
	var err error
	if top.Redis, err = StartRedis(ctx, dir, portOr(0)); err != nil {
		t.Fatal(err)
	}
	if err := top.startSentinels(ctx, dir, 0, nil); err != nil {
		t.Fatal(err)
	}
	return top
}
