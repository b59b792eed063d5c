package broker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// pipelineCounter counts the publish pipelines a client sends, the script
// runs and the WAITs in them.
type pipelineCounter struct{ pipelines, sends, waits atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		sends := 0
		for _, cmd := range cmds {
			switch cmd.Name() {
			case "evalsha":
				sends++
			case "wait":
				c.waits.Add(1)
			}
		}
		if sends > 0 { // not the connection's own set-up
			c.pipelines.Add(1)
			c.sends.Add(int64(sends))
		}
		return next(ctx, cmds)
	}
}

// TestConcurrentSendsShareRoundTrips: 2000 sends to 400 new rooms released
// at once, after Redis forgot the script, travel in far fewer pipelines than
// sends, with one WAIT per pipeline; each is acked once, and every room's
// seqs run 1..n without a hole: its concurrent first sends shared one
// reservation.
func TestConcurrentSendsShareRoundTrips(t *testing.T) {
	primary := startRedis(t)
	startReplica(t, primary)
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr(), MaxRetries: -1})
	count := &pipelineCounter{}
	rdb.AddHook(count)
	b := broker.New(rdb, broker.Options{MinReplicas: 1})
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	const senders, rooms = 2000, 400
	start := make(chan struct{})
	var wg sync.WaitGroup
	seqs := make([][]bool, rooms)
	var mu sync.Mutex
	for r := range seqs {
		seqs[r] = make([]bool, senders/rooms+1)
	}
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			room := i % rooms
			acc, err := b.Publish(ctx, fmt.Sprintf("busy-%d", room), "alice", "hi", "", time.Now())
			if err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if acc.Seq < 1 || acc.Seq > senders/rooms || seqs[room][acc.Seq] {
				t.Errorf("room %d: seq %d acked out of 1..%d or twice", room, acc.Seq, senders/rooms)
				return
			}
			seqs[room][acc.Seq] = true
		}()
	}
	close(start)
	wg.Wait()
	p, s, w := count.pipelines.Load(), count.sends.Load(), count.waits.Load()
	t.Logf("%d sends (%d script runs, the first after SCRIPT FLUSH) in %d pipelines, %d WAITs", senders, s, p, w)
	if p >= senders/2 {
		t.Errorf("%d pipelines for %d concurrent sends: they were not coalesced", p, senders)
	}
	if w != p {
		t.Errorf("%d WAITs in %d pipelines, want one each", w, p)
	}
}

// TestANewRoomStartsAt1WhicheverInstanceSeedsIt: three instances (brokers
// sharing Redis and Postgres) send to 50 new rooms at once, 10 sends each
// per instance: every room's seqs are 1..30, whichever instance reserved
// its first block, since one sender of all of them reserves while the
// others wait for the room's seeding lock.
func TestANewRoomStartsAt1WhicheverInstanceSeedsIt(t *testing.T) {
	r := startRedis(t)
	_, st := startStore(t)
	var brokers []*broker.Broker
	for range 3 {
		brokers = append(brokers, connect(t, r.URL(), broker.Options{Ledger: st}))
	}
	const rooms, each = 50, 10
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string][]int64{}
	for room := range rooms {
		name := fmt.Sprintf("new-%d", room)
		for _, b := range brokers {
			for range each {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					acc, err := b.Publish(context.Background(), name, "alice", "hi", "", time.Now())
					if err != nil {
						t.Errorf("send to %s: %v", name, err)
						return
					}
					mu.Lock()
					acked[name] = append(acked[name], acc.Seq)
					mu.Unlock()
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	for name, seqs := range acked {
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Errorf("%s: seqs %v, want 1..%d", name, seqs, len(brokers)*each)
				break
			}
		}
	}
}
