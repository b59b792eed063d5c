package broker_test

import (
	"context"
	"fmt"
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

// TestConcurrentSendsShareRoundTrips: 2000 sends to 400 new rooms (more
// rooms than reservation locks) released at once, after Redis forgot the
// script, travel in far fewer pipelines than sends, with one WAIT per
// pipeline; each is acked once, and every room's seqs run 1..n without a
// hole: its concurrent first sends shared one reservation.
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
