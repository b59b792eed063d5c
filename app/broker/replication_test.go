package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/chattest"
)

// replyDropper forwards connections to Redis and, once armed, swallows the
// reply to the next EVALSHA and cuts that connection: the script ran, the
// client never hears of it (a read timeout or reset mid-script).
type replyDropper struct {
	ln    net.Listener
	armed atomic.Bool
}

func startDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, s)
		}
	}()
	return p
}

func (p *replyDropper) pipe(c, s net.Conn) {
	defer c.Close()
	defer s.Close()
	var drop atomic.Bool
	go func() {
		defer s.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) && p.armed.CompareAndSwap(true, false) {
				drop.Store(true)
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if err != nil || drop.Load() {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *replyDropper) Addr() string { return p.ln.Addr().String() }

// TestPublishWhoseReplyIsLostRunsOnce loses the reply of the publish script
// after Redis ran it. go-redis retries such a command when MaxRetries allows
// it, which would store the send a second time; the broker must report the
// failure instead, with the message stored once, and the client's retry with
// its id must be answered as a duplicate of it.
func TestPublishWhoseReplyIsLostRunsOnce(t *testing.T) {
	r := startRedis(t)
	p := startDropper(t, r.Addr())
	b := connect(t, "redis://"+p.Addr()+"/0", broker.Options{})
	rdb := r.client()
	ctx := context.Background()
	for _, tc := range []struct{ room, id string }{{"reply-lost-no-id", ""}, {"reply-lost-with-id", "c-1"}} {
		// The room's first send seeds it (and loads the script); the lost
		// reply is the second's.
		if _, err := b.Publish(ctx, tc.room, "alice", "first", "", time.Now()); err != nil {
			t.Fatal(err)
		}
		p.armed.Store(true)
		_, err := b.Publish(ctx, tc.room, "alice", "hello", tc.id, time.Now())
		if p.armed.Load() {
			t.Fatalf("%s: the script never went through the proxy", tc.room)
		}
		if err == nil {
			t.Fatalf("%s: a send whose reply was lost was reported accepted", tc.room)
		}
		log := "chat:{" + tc.room + "}:log"
		if n := rdb.XLen(ctx, log).Val(); n != 2 {
			t.Fatalf("%s: the send was stored %d times, want once", tc.room, n-1)
		}
		if tc.id == "" {
			continue
		}
		acc, err := b.Publish(ctx, tc.room, "alice", "hello", tc.id, time.Now())
		if err != nil || !acc.Duplicate || acc.Seq != 2 {
			t.Fatalf("%s: the retry with its id: %+v, %v; want the duplicate of seq 2", tc.room, acc, err)
		}
		if n := rdb.XLen(ctx, log).Val(); n != 2 {
			t.Fatalf("%s: the send was stored %d times after the retry, want once", tc.room, n-1)
		}
	}
}

// startReplica starts a replica of primary and waits for its link.
func startReplica(t testing.TB, primary *redisServer) *redisServer {
	t.Helper()
	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	waitLinked(t, r)
	return r
}

func waitLinked(t testing.TB, replica *redisServer) {
	t.Helper()
	c := replica.client()
	chattest.Eventually(t, 20*time.Second, "the replica's link to its primary", func() bool {
		return strings.Contains(c.Info(context.Background(), "replication").Val(), "master_link_status:up")
	})
}

// TestMinReplicasAcksOnlyWhatAReplicaHas: with REDIS_MIN_REPLICAS=1 an ack
// means the replica holds the message. With the replica gone the send is
// refused before anything is written: a primary without its replicas may be
// a failover's loser. With the replica connected but stalled (SIGSTOP) the
// message is written, WAIT falls short and the send is refused; the
// client's retry with its id once the replica is back is the duplicate.
func TestMinReplicasAcksOnlyWhatAReplicaHas(t *testing.T) {
	primary := startRedis(t)
	replica := startReplica(t, primary)
	b := connect(t, primary.URL(), broker.Options{MinReplicas: 1, ReplicaTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := b.Publish(ctx, "replicated", "alice", "one", "id-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	logLen := func(r *redisServer) int64 { return r.client().XLen(ctx, "chat:{replicated}:log").Val() }
	if n := logLen(replica); n != 1 {
		t.Fatalf("acked, but the replica holds %d messages", n)
	}

	replica.kill()
	chattest.Eventually(t, 10*time.Second, "the primary to see its replica gone", func() bool {
		return strings.Contains(primary.client().Info(ctx, "replication").Val(), "connected_slaves:0")
	})
	_, err := b.Publish(ctx, "replicated", "alice", "two", "id-2", time.Now())
	if !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("send with the replica down: err = %v, want ErrNotReplicated", err)
	}
	if n := logLen(primary); n != 1 {
		t.Fatalf("refused for want of a replica, yet the primary holds %d messages, want 1", n)
	}

	replica.start("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	waitLinked(t, replica)
	if err := replica.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	_, err = b.Publish(ctx, "replicated", "alice", "two", "id-2", time.Now())
	if err := replica.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, broker.ErrNotReplicated) {
		t.Fatalf("send with the replica stalled: err = %v, want ErrNotReplicated", err)
	}
	acc, err := b.Publish(ctx, "replicated", "alice", "two", "id-2", time.Now())
	if err != nil || !acc.Duplicate || acc.Seq != 2 {
		t.Fatalf("retry once the replica is back: %+v, %v; want the duplicate of seq 2", acc, err)
	}
	// A duplicate's answer does not wait for the replica, which catches up on its own.
	if err := primary.client().Do(ctx, "wait", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	if n := logLen(replica); n != 2 {
		t.Fatalf("acked, but the replica holds %d messages, want 2", n)
	}
}

// TestSentinelFailoverKeepsSeqsUnique runs a primary, a replica and three
// Sentinels, connects through a redis+sentinel:// REDIS_URL and fails the
// primary over mid-stream: sends go on being accepted on the new primary,
// every acked message is on it and no seq is handed out twice.
func TestSentinelFailoverKeepsSeqsUnique(t *testing.T) {
	primary := startRedis(t)
	replica := startReplica(t, primary)
	var addrs []string
	var sentinels []*redisServer
	for range 3 {
		s := startSentinel(t, primary)
		sentinels = append(sentinels, s)
		addrs = append(addrs, s.Addr())
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0].Addr()})
	t.Cleanup(func() { sc.Close() })
	ctx := context.Background()
	chattest.Eventually(t, 30*time.Second, "the Sentinels to know the replica and each other", func() bool {
		replicas, err := sc.Replicas(ctx, "mymaster").Result()
		others, err2 := sc.Sentinels(ctx, "mymaster").Result()
		return err == nil && err2 == nil && len(replicas) == 1 && len(others) == 2
	})

	b := connect(t, "redis+sentinel://"+strings.Join(addrs, ",")+"/mymaster", broker.Options{MinReplicas: 1})
	s := newSender(t, b, "failover")
	last := int64(0)
	sendSome := func() {
		for range 20 {
			a := s.send()
			if a.Seq <= last {
				t.Fatalf("seq %d acked after %d", a.Seq, last)
			}
			last = a.Seq
		}
	}
	sendSome()
	before := s.send().Epoch
	if err := sc.Failover(ctx, "mymaster").Err(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(replica.Port)
	chattest.Eventually(t, 30*time.Second, "the Sentinels to name the replica primary", func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && len(addr) == 2 && addr[1] == want
	})
	if a := s.send(); a.Epoch == before {
		t.Errorf("the epoch stayed %q across the failover", before)
	}
	sendSome()

	msgs, err := replica.client().XRange(ctx, "chat:{failover}:log", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, m := range msgs {
		kept[m.ID] = true
	}
	for seq := range s.acked {
		if !kept[fmt.Sprintf("%d-0", seq)] {
			t.Errorf("acked seq %d is not on the new primary", seq)
		}
	}
}

// TestFailoverToALaggingReplicaDoesNotReuseSeqs is the asynchronous
// replication case (ElastiCache failover, REDIS_MIN_REPLICAS=0): the replica
// is promoted before it got the newest acked messages. Its counter is behind,
// yet the first send on it must get a seq above every acked one: the new
// primary's replication id makes the room reseed, under a new epoch.
func TestFailoverToALaggingReplicaDoesNotReuseSeqs(t *testing.T) {
	primary := startRedis(t)
	replica := startReplica(t, primary)
	_, st := startStore(t)
	const block = 50
	b := connect(t, primary.URL(), broker.Options{SeqBlock: block, Ledger: st})
	s := newSender(t, b, "lagging")
	for range 5 {
		s.send()
	}
	persistAll(t, b, st)
	ctx := context.Background()
	if err := primary.client().Do(ctx, "wait", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	// The replica is promoted; the old primary still acks three more sends
	// that the new one never gets.
	if err := replica.client().SlaveOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	var old broker.Accepted
	for range 3 {
		old = s.send()
	}

	promoted := connect(t, replica.URL(), broker.Options{SeqBlock: block, Ledger: st})
	s.b = promoted
	after := s.send()
	if after.Seq != block+1 || after.Seq <= old.Seq {
		t.Errorf("first seq on the promoted replica %d, want %d (the second block of %d), above the lost %d",
			after.Seq, block+1, block, old.Seq)
	}
	if after.Epoch == old.Epoch {
		t.Errorf("the epoch stayed %q across the failover", after.Epoch)
	}
	if next := s.send(); next.Seq != after.Seq+1 || next.Epoch != after.Epoch {
		t.Errorf("the send after the reseed: %+v, want seq %d in epoch %q", next, after.Seq+1, after.Epoch)
	}
}
