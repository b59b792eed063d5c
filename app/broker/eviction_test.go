package broker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// The instance tells at start-up whether its Redis may evict keys (issue 25):
// the policy is read from INFO memory, which ElastiCache answers (it refuses
// CONFIG GET), and every policy but noeviction counts as evicting, the
// volatile-* ones first: every room key has a TTL.
func TestEvictionPolicyIsReadFromRedis(t *testing.T) {
	r := startRedis(t)
	b := connect(t, r.URL(), broker.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		policy string
		evicts bool
	}{
		{"volatile-lru", true}, // ElastiCache's default
		{"noeviction", false},
		{"allkeys-lru", true},
		{"volatile-ttl", true},
		{"noeviction", false}, // and back
	} {
		if err := r.client().ConfigSet(ctx, "maxmemory-policy", tc.policy).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := b.EvictionPolicy(ctx)
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		if got != tc.policy {
			t.Errorf("policy %q read back as %q", tc.policy, got)
		}
		if broker.Evicts(got) != tc.evicts {
			t.Errorf("Evicts(%q) = %v, want %v", got, !tc.evicts, tc.evicts)
		}
	}
}

// An unreachable Redis is an error, never taken for noeviction.
func TestEvictionPolicyOfAnUnreachableRedisIsAnError(t *testing.T) {
	r := startRedis(t)
	b := connect(t, r.URL(), broker.Options{})
	r.kill()
	if policy, err := b.EvictionPolicy(context.Background()); err == nil {
		t.Errorf("policy %q from a stopped Redis: want an error", policy)
	}
}

// Under a policy that may evict, a retry whose dedupe key was evicted (the
// room's state intact, so nothing reseeds) is still answered with its
// original seq: WatchEviction turns on the lookup of every id in the
// backlog and Postgres. Under noeviction the lookup is off again.
func TestARetryWhoseDedupeKeyWasEvictedIsAnsweredWithItsSeq(t *testing.T) {
	r := startRedis(t)
	_, st := startStore(t)
	b := connect(t, r.URL(), broker.Options{Ledger: st})
	rdb := r.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan bool, 4)
	go b.WatchEviction(ctx, 50*time.Millisecond, func(_ string, evicts bool) { reports <- evicts })
	if evicts := <-reports; evicts {
		t.Fatal("a fresh Redis reported as evicting")
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if evicts := <-reports; !evicts {
		t.Fatal("volatile-lru not reported as evicting")
	}
	for _, stored := range []bool{false, true} {
		s := newSender(t, b, "evicted-"+strconv.FormatBool(stored))
		orig := s.send()
		if stored {
			persistAll(t, b, st)
		}
		keys, err := rdb.Keys(ctx, "chat:{"+s.room+"}:id:*").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("dedupe keys %v, %v", keys, err)
		}
		rdb.Del(ctx, keys...)
		retry, err := b.Publish(ctx, s.room, "alice", s.acked[orig.Seq], "id-1", time.Now())
		if err != nil || !retry.Duplicate || retry.Seq != orig.Seq {
			t.Errorf("stored %t: retry after its dedupe key was evicted: %+v, %v; want the duplicate of %d", stored, retry, err, orig.Seq)
		}
	}
}
