package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/persist"
)

// events collects a subscription's events.
type events struct {
	mu         sync.Mutex
	subscribed map[string]int
	got        map[string][]int64
}

func listen(t *testing.T, b *broker.Broker, rooms ...string) *events {
	t.Helper()
	e := &events{subscribed: map[string]int{}, got: map[string][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	sub := b.Subscribe(ctx)
	t.Cleanup(func() { cancel(); sub.Close() })
	go sub.Run(ctx, func(ev broker.Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if ev.Subscribed != "" {
			e.subscribed[ev.Subscribed]++
			return
		}
		if !strings.Contains(string(ev.Delivery.Frame), `"room":"`+ev.Delivery.Room+`"`) {
			t.Errorf("a delivery for %s carries another room's frame: %s", ev.Delivery.Room, ev.Delivery.Frame)
		}
		e.got[ev.Delivery.Room] = append(e.got[ev.Delivery.Room], ev.Delivery.Seq)
	})
	if err := sub.Add(ctx, rooms...); err != nil {
		t.Fatal(err)
	}
	e.waitSubscribed(t, 1, rooms...)
	return e
}

// waitSubscribed waits until each room was confirmed at least n times.
func (e *events) waitSubscribed(t *testing.T, n int, rooms ...string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		e.mu.Lock()
		short := ""
		for _, r := range rooms {
			if e.subscribed[r] < n {
				short = r
				break
			}
		}
		e.mu.Unlock()
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s not confirmed %d times within 20 s", short, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *events) seqs(room string) []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int64(nil), e.got[room]...)
}

func rooms(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("room-%d", i)
	}
	return out
}

// TestAClusterSpreadsRoomsAndKeepsEachRoomsSeqsAndOrder sends to 60 rooms
// at once on a 3-shard cluster with REDIS_MIN_REPLICAS=1: each room counts
// 1, 2, 3... (its keys in one slot, batches split per partition, WAIT on
// the shard that wrote), every message reaches a subscriber in order
// through its partition's sharded channel, and the persist streams give
// each message once to the writer.
func TestAClusterSpreadsRoomsAndKeepsEachRoomsSeqsAndOrder(t *testing.T) {
	c := chattest.StartCluster(t)
	b := connect(t, c.URL(), broker.Options{MinReplicas: 1, Partitions: 16})
	ctx := context.Background()
	if err := b.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	names := rooms(60)
	ev := listen(t, b, names...)
	const per = 20
	var wg sync.WaitGroup
	for _, room := range names {
		wg.Go(func() {
			for i := 1; i <= per; i++ {
				acc, err := b.Publish(ctx, room, "alice", "hi", fmt.Sprintf("m%d", i), time.Now())
				if err != nil {
					t.Errorf("send %d to %s: %v", i, room, err)
					return
				}
				if acc.Seq != int64(i) {
					t.Errorf("send %d to %s got seq %d", i, room, acc.Seq)
				}
			}
		})
	}
	wg.Wait()
	if dup, err := b.Publish(ctx, names[0], "alice", "hi", "m3", time.Now()); err != nil || !dup.Duplicate || dup.Seq != 3 {
		t.Errorf("a resend of m3 got %+v, %v; want the duplicate of seq 3", dup, err)
	}
	for _, room := range names {
		for deadline := time.Now().Add(10 * time.Second); len(ev.seqs(room)) < per && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		got := ev.seqs(room)
		for i, s := range got {
			if s != int64(i+1) {
				t.Fatalf("%s delivered %v, want 1..%d in order", room, got, per)
			}
		}
		if len(got) != per {
			t.Fatalf("%s delivered %d of %d", room, len(got), per)
		}
		if at, err := b.Latest(ctx, room); err != nil || at.Seq != per {
			t.Fatalf("latest of %s: %+v, %v", room, at, err)
		}
	}
	if n, err := b.PersistBacklog(ctx); err != nil || n != int64(len(names)*per) {
		t.Fatalf("backlog %d, %v; want %d", n, err, len(names)*per)
	}
	pending, err := b.Pending(ctx, names[1], 5, 10)
	if err != nil || len(pending) != 5 || pending[0].Seq != 6 {
		t.Fatalf("pending of %s after 5: %d messages from %v, %v", names[1], len(pending), pending, err)
	}
	var read []broker.PersistEntry
	for len(read) < len(names)*per {
		got, err := b.ReadPersist(ctx, "w1", 500, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Fatalf("the writer read %d of %d entries", len(read), len(names)*per)
		}
		read = append(read, got...)
	}
	ids := make([]string, len(read))
	for i, e := range read {
		ids[i] = e.ID
	}
	if err := b.AckPersist(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if n, err := b.PersistBacklog(ctx); err != nil || n != 0 {
		t.Fatalf("backlog after the ack: %d, %v", n, err)
	}
}

// TestAClusterRefusesAnotherPartitionCount: two instances with different
// REDIS_PARTITIONS would put a room in two partitions.
func TestAClusterRefusesAnotherPartitionCount(t *testing.T) {
	c := chattest.StartCluster(t)
	ctx := context.Background()
	if err := connect(t, c.URL(), broker.Options{Partitions: 16}).ClaimPartitions(ctx); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, c.URL(), broker.Options{Partitions: 16}).ClaimPartitions(ctx); err != nil {
		t.Fatalf("the same count again: %v", err)
	}
	err := connect(t, c.URL(), broker.Options{Partitions: 32}).ClaimPartitions(ctx)
	if !errors.Is(err, broker.ErrPartitionsDiffer) || !strings.Contains(err.Error(), "REDIS_PARTITIONS=32") {
		t.Fatalf("a second count was accepted or not named: %v", err)
	}
}

// shardOf is the primary that holds the room's keys now, and its replica.
func shardOf(t *testing.T, c *local.Cluster, room string) (primary, replica *local.Redis) {
	t.Helper()
	ctx := context.Background()
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range primaries {
		cl := redis.NewClient(&redis.Options{Addr: p.Addr()})
		keys, err := cl.Keys(ctx, "chat:*:r:"+room+":seq").Result()
		cl.Close()
		if err != nil || len(keys) == 0 {
			continue
		}
		info, err := p.Info(ctx, "replication")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			if strings.Contains(info["slave0"], fmt.Sprintf("port=%d,", n.Port)) {
				return p, n
			}
		}
		t.Fatalf("%s has no replica: %s", p.Name, info["slave0"])
	}
	t.Fatalf("no primary holds %s", room)
	return nil, nil
}

// lobbyOnACluster is a room "lobby" on a cluster of its own, with a
// subscriber and a sender that has had 20 sends acked.
func lobbyOnACluster(t *testing.T) (*local.Cluster, *events, *sender) {
	c := chattest.StartCluster(t)
	_, st := startStore(t)
	b := connect(t, c.URL(), broker.Options{MinReplicas: 1, Partitions: 16, Ledger: st})
	ev := listen(t, b, "lobby")
	s := newSender(t, b, "lobby")
	for range 20 {
		s.send()
	}
	return c, ev, s
}

// TestARoomKeepsCountingAndDeliveringAcrossAShardFailover runs CLUSTER
// FAILOVER on the replica of a room's shard while the room takes sends:
// no seq is handed out twice, acked messages stay in the log, and the
// subscriber is confirmed again (so the hub repairs from the log).
func TestARoomKeepsCountingAndDeliveringAcrossAShardFailover(t *testing.T) {
	c, ev, s := lobbyOnACluster(t)
	ctx := context.Background()
	_, replica := shardOf(t, c, "lobby")
	if out, err := exec.Command("redis-cli", "-p", fmt.Sprint(replica.Port), "cluster", "failover").CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("cluster failover: %v: %s", err, out)
	}
	for range 40 {
		s.send()
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := shardOf(t, c, "lobby"); now != replica {
		t.Fatalf("the room is on %s, not on the promoted replica %s", now.Name, replica.Name)
	}
	ev.waitSubscribed(t, 2, "lobby")
	s.keptAfter(ctx, "the failover")
	if len(s.acked) != 60 {
		t.Errorf("%d distinct seqs acked for 60 sends", len(s.acked))
	}
}

// TestARoomKeepsCountingAndDeliveringWhileItsSlotMoves moves the slot of a
// room's partition to another shard, key by key as a reshard does, while
// the room takes sends: sends wait out the move (ASK, TRYAGAIN) and follow
// MOVED, no seq is handed out twice, every acked message is in the log on
// the new shard and reaches the subscriber, which is confirmed again (the
// old shard ends its subscription with sunsubscribe).
func TestARoomKeepsCountingAndDeliveringWhileItsSlotMoves(t *testing.T) {
	c, ev, s := lobbyOnACluster(t)
	ctx := context.Background()
	from, _ := shardOf(t, c, "lobby")
	fc := redis.NewClient(&redis.Options{Addr: from.Addr()})
	defer fc.Close()
	keys, err := fc.Keys(ctx, "chat:*:r:lobby:seq").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("the room's counter on %s: %v, %v", from.Name, keys, err)
	}
	slot, err := fc.ClusterKeySlot(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to := primaries[0]
	if to == from {
		to = primaries[1]
	}
	moved := make(chan error, 1)
	go func() { moved <- c.MoveSlot(ctx, int(slot), to) }()
	for range 60 {
		s.send()
	}
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	for range 20 {
		s.send()
	}
	if now, _ := shardOf(t, c, "lobby"); now != to {
		t.Fatalf("the room is on %s, not on %s where its slot moved", now.Name, to.Name)
	}
	ev.waitSubscribed(t, 2, "lobby")
	s.keptAfter(ctx, "the move")
	last := s.maxAcked()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if seqs := ev.seqs("lobby"); len(seqs) > 0 && seqs[len(seqs)-1] == last {
			return
		}
	}
	t.Errorf("the subscriber's last delivery is %v, want seq %d (sent after the move)", ev.seqs("lobby")[max(0, len(ev.seqs("lobby"))-3):], last)
}

// TestAClusterSpreadsTheLoadOfAThousandRoomsEvenly sends to 1,000 rooms on
// a 3-shard cluster with the default 128 partitions and reads each
// primary's INFO commandstats: each shard's share of script runs and of
// sharded publishes is within 15 % of the mean (issue 29).
func TestAClusterSpreadsTheLoadOfAThousandRoomsEvenly(t *testing.T) {
	c := chattest.StartCluster(t)
	b := connect(t, c.URL(), broker.Options{})
	ctx := context.Background()
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stats := func(n *local.Redis) (evals, publishes int64) {
		info, err := n.Info(ctx, "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		calls := func(cmd string) int64 {
			var v int64
			fmt.Sscanf(info["cmdstat_"+cmd], "calls=%d", &v)
			return v
		}
		return calls("evalsha") + calls("eval"), calls("spublish")
	}
	before := make([][2]int64, len(primaries))
	for i, n := range primaries {
		before[i][0], before[i][1] = stats(n)
	}
	names := rooms(1000)
	const per = 5
	work := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for room := range work {
				for i := range per {
					if _, err := b.Publish(ctx, room, "alice", "hi", fmt.Sprint(i), time.Now()); err != nil {
						t.Errorf("send to %s: %v", room, err)
					}
				}
			}
		})
	}
	for _, r := range names {
		work <- r
	}
	close(work)
	wg.Wait()
	var evals, pubs []float64
	for i, n := range primaries {
		e, p := stats(n)
		evals, pubs = append(evals, float64(e-before[i][0])), append(pubs, float64(p-before[i][1]))
	}
	for what, counts := range map[string][]float64{"script runs": evals, "sharded publishes": pubs} {
		var sum float64
		for _, v := range counts {
			sum += v
		}
		mean := sum / float64(len(counts))
		var shares []string
		for i, v := range counts {
			dev := (v - mean) / mean
			shares = append(shares, fmt.Sprintf("%s %.0f (%+.1f%%)", primaries[i].Name, v, 100*dev))
			if dev > 0.15 || dev < -0.15 {
				t.Errorf("%s: %s has %.0f, %+.1f%% from the mean %.0f", what, primaries[i].Name, v, 100*dev, mean)
			}
		}
		t.Logf("%s per shard, 1000 rooms x %d sends: %s", what, per, strings.Join(shares, ", "))
	}
}

// TestAClusterAnswersPingWhileOneOfItsPrimariesDoes: readiness follows the
// cluster, not one random node: a shard's primary killed leaves it ready,
// every node killed does not.
func TestAClusterAnswersPingWhileOneOfItsPrimariesDoes(t *testing.T) {
	c := chattest.StartCluster(t)
	b := connect(t, c.URL(), broker.Options{})
	ctx := context.Background()
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	primaries[0].Kill()
	for range 10 {
		if err := b.Ping(ctx); err != nil {
			t.Fatalf("ping with %s killed: %v", primaries[0].Name, err)
		}
	}
	for _, n := range c.Nodes {
		n.Kill()
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("ping answered with every node stopped")
	}
}

// TestWhileAShardIsDownTheOtherShardsMessagesAreStored: with a shard's
// primary and replica both down (and the cluster serving the rest of its
// slots, cluster-require-full-coverage no), the persist writer still stores
// the messages queued on the other shards: one pipeline over every
// partition fails as a whole, and that must not hold back all of them.
func TestWhileAShardIsDownTheOtherShardsMessagesAreStored(t *testing.T) {
	c := chattest.StartCluster(t)
	_, st := startStore(t)
	b := connect(t, c.URL(), broker.Options{Partitions: 16, Ledger: st})
	ctx := context.Background()
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr()})
		err := cl.ConfigSet(ctx, "cluster-require-full-coverage", "no").Err()
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	names := rooms(48)
	for _, room := range names {
		for i := range 2 {
			if _, err := b.Publish(ctx, room, "alice", "hi", fmt.Sprintf("%s-%d", room, i), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	dead, deadReplica := shardOf(t, c, names[0])
	var alive []string
	for _, room := range names {
		if p, _ := shardOf(t, c, room); p != dead {
			alive = append(alive, room)
		}
	}
	if len(alive) == 0 || len(alive) == len(names) {
		t.Fatalf("%d of %d rooms on the shards left up: the test needs some on each side", len(alive), len(names))
	}
	deadReplica.Kill()
	dead.Kill()

	w := &persist.Writer{Source: b, Sink: st, Consumer: "test", Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(run) }()
	defer func() { stop(); <-done }()
	chattest.Eventually(t, 30*time.Second, fmt.Sprintf("the %d rooms of the shards left up stored", len(alive)), func() bool {
		for _, room := range alive {
			if _, n, err := st.Newest(ctx, room, 0, 10, 10); err != nil || n != 2 {
				return false
			}
		}
		return true
	})
}
