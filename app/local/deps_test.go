package local

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestAKilledRedisKeepsEveryWriteItAcked: the local target's Redis leaves
// syncing its AOF to the kernel (appendfsync no) but writes it before each
// reply, so SIGKILL in the middle of a stream of writes loses none that was
// acknowledged: after the restart the counter is at least the acks counted.
func TestAKilledRedisKeepsEveryWriteItAcked(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := StartRedis(ctx, dir, portOr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(10 * time.Second)

	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	var mu sync.Mutex
	acked := 0
	enough := make(chan struct{})
	var writers sync.WaitGroup
	for range 8 {
		writers.Go(func() {
			for c.Incr(ctx, "acked").Err() == nil {
				mu.Lock()
				if acked++; acked == 2000 {
					close(enough)
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("2,000 increments were not acked: %v", ctx.Err())
	}
	r.Kill()
	writers.Wait()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "acked").Int()
	if err != nil {
		t.Fatal(err)
	}
	if got < acked {
		t.Fatalf("after SIGKILL Redis holds %d increments, but %d were acked", got, acked)
	}
	t.Logf("%d increments acked before SIGKILL, %d kept", acked, got)
}
