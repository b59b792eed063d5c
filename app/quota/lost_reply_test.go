package quota

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
)

// lossy loses the replies on connections to one address while armed: each
// read waits for Redis's reply, so the commands were applied, then drops
// it and fails, as when a primary dies or the network breaks after a write.
// (A connection dialed while armed fails its handshake: nothing reaches
// Redis on it, so the tests open theirs before.)
type lossy struct{ addr atomic.Pointer[string] }

func (l *lossy) arm(addr string) { l.addr.Store(&addr) }
func (l *lossy) disarm()         { l.addr.Store(nil) }

func (l *lossy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, l: l, addr: addr}, nil
}

type lossyConn struct {
	net.Conn
	l    *lossy
	addr string
}

func (c *lossyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if a := c.l.addr.Load(); a != nil && *a == c.addr && err == nil {
		c.Conn.Close()
		return 0, io.ErrUnexpectedEOF
	}
	return n, err
}

// A sync whose replies are lost after Redis applied it (a shard's primary
// killed mid-pipeline, seen in the chaos test on a cluster: issue 29) must
// not count the same events again when the next sync pushes them: other
// instances would then refuse an honest user under the limit. On a cluster
// the pipeline spans shards: the healthy shard applies its part while the
// lost one fails the whole sync, and the user on the healthy shard must not
// be counted twice either.
func TestCountedOnceWhenRepliesAreLost(t *testing.T) {
	type dialer = func(context.Context, string, string) (net.Conn, error)
	for _, tc := range []struct {
		name string
		// setup returns a client dialing through dial, a clean one, and
		// the address of the primary serving a key.
		setup func(t *testing.T, dial dialer) (lossyClient, clean redis.UniversalClient, owner func(key string) string)
	}{
		{"standalone", func(t *testing.T, dial dialer) (redis.UniversalClient, redis.UniversalClient, func(string) string) {
			r := startRedis(t)
			c := redis.NewClient(&redis.Options{Addr: r.Addr(), Dialer: dial})
			t.Cleanup(func() { c.Close() })
			if err := c.Ping(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			return c, r.client(), func(string) string { return r.Addr() }
		}},
		{"cluster", func(t *testing.T, dial dialer) (redis.UniversalClient, redis.UniversalClient, func(string) string) {
			c := chattest.StartCluster(t)
			addrs := make([]string, len(c.Nodes))
			for i, n := range c.Nodes {
				addrs[i] = n.Addr()
			}
			lc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Dialer: dial})
			clean := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			t.Cleanup(func() { lc.Close(); clean.Close() })
			err := lc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
			if err != nil {
				t.Fatal(err)
			}
			return lc, clean, func(key string) string { return ownerOf(t, c, clean, key) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var drop lossy
			lossyClient, clean, owner := tc.setup(t, drop.dial)
			now := freshWindow(time.Minute, 20*time.Second)
			// Users whose counters live on different shards where there are
			// several; the last one's shard loses its replies.
			seen := map[string]bool{}
			var users []string
			for i := 0; i < 100 && len(users) < 2; i++ {
				u := fmt.Sprintf("user-%d", i)
				if o := owner(rateKey(entryKey{name: "user_resumes", key: u, win: now.UnixNano() / int64(time.Minute)})); !seen[o] {
					seen[o] = true
					users = append(users, u)
				}
			}
			lost := owner(rateKey(entryKey{name: "user_resumes", key: users[len(users)-1], win: now.UnixNano() / int64(time.Minute)}))

			rate := Rate{Count: 3, Per: time.Minute}
			var errs errCount
			one := New(lossyClient, Options{Instance: "one", OnError: errs.add})
			ctx := context.Background()
			for _, u := range users {
				if ok, _ := one.Allow("user_resumes", u, rate, now); !ok {
					t.Fatalf("the first resume of %s refused", u)
				}
			}
			drop.arm(lost)
			one.sync(ctx)
			if errs.n.Load() == 0 {
				t.Fatal("the sync with its replies lost reported no error: the fault did not happen")
			}
			drop.disarm()
			errs.n.Store(0)
			one.sync(ctx)
			if n := errs.n.Load(); n != 0 {
				t.Fatalf("the sync after the replies came back reported %d errors", n)
			}

			// Each user has 1 of 3 counted: another instance admits one
			// more after it learns the count, and refuses the next.
			two := New(clean, Options{Instance: "two", OnError: func(err error) { t.Error(err) }})
			for _, u := range users {
				two.Allow("user_resumes", u, rate, now)
			}
			two.sync(ctx)
			for _, u := range users {
				if ok, _ := two.Allow("user_resumes", u, rate, now); !ok {
					t.Errorf("%s refused at its 3rd resume of 3: a lost reply counted its first again", u)
				}
				if ok, _ := two.Allow("user_resumes", u, rate, now); ok {
					t.Errorf("%s admitted a 4th resume of 3", u)
				}
			}
		})
	}
}

// ownerOf is the address of the primary serving key's slot.
func ownerOf(t *testing.T, c *local.Cluster, rdb redis.UniversalClient, key string) string {
	t.Helper()
	ctx := context.Background()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Owner(ctx, int(slot))
	if err != nil {
		t.Fatal(err)
	}
	return n.Addr()
}
