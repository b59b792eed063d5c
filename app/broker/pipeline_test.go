package broker_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// pipelineCounter counts the publish pipelines a client sends, the sends
// their script runs carry and the WAITs in them; with gate set, every
// pipeline waits for it to close. With room set, it notes when each
// pipeline with a run for that room went.
type pipelineCounter struct {
	pipelines, sends, waits, most atomic.Int64
	gate                          chan struct{}

	room     string
	mu       sync.Mutex
	roomRuns []time.Time
}

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (c *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		sends := int64(0)
		for _, cmd := range cmds {
			switch cmd.Name() {
			case "evalsha":
				// evalsha sha numkeys keys... args...: 2 keys a run, 8 a send.
				keys, _ := cmd.Args()[2].(int)
				sends += int64((keys - 2) / 8)
				if c.room != "" && slices.ContainsFunc(cmd.Args(), func(a any) bool { k, _ := a.(string); return strings.Contains(k, c.room) }) {
					c.mu.Lock()
					c.roomRuns = append(c.roomRuns, time.Now())
					c.mu.Unlock()
				}
			case "wait":
				c.waits.Add(1)
			}
		}
		if sends > 0 { // not the connection's own set-up
			c.pipelines.Add(1)
			c.sends.Add(sends)
			for m := c.most.Load(); sends > m && !c.most.CompareAndSwap(m, sends); m = c.most.Load() {
			}
			if c.gate != nil {
				<-c.gate
			}
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
	t.Logf("%d sends (%d in script runs, the first run after SCRIPT FLUSH) in %d pipelines, at most %d a run, %d WAITs", senders, s, p, count.most.Load(), w)
	if p >= senders/2 {
		t.Errorf("%d pipelines for %d concurrent sends: they were not coalesced", p, senders)
	}
	if w != p {
		t.Errorf("%d WAITs in %d pipelines, want one each", w, p)
	}
}

// TestSendsWaitForOthersOnlyWhileMoreAreExpected: with Coalesce, a send
// waits for others only while the instance's sends come at more than one a
// Coalesce: a stream of them shares runs of the script, while a send after
// a quiet spell, or sends that come less than Coalesce apart now and then
// but fewer than one a Coalesce, go at once.
func TestSendsWaitForOthersOnlyWhileMoreAreExpected(t *testing.T) {
	const coalesce = 60 * time.Millisecond // far above any send's own time
	for _, tc := range []struct {
		name     string
		sends    int
		gaps     []time.Duration // before each send, in turn
		newRooms bool            // each send to a room of its own: two runs each
		// shared: the sends went in at most half as many runs; else each
		// went at once.
		shared bool
	}{
		{"a lone send after a quiet spell", 3, []time.Duration{10 * coalesce}, false, false},
		{"sends now and then closer than Coalesce, fewer than one a Coalesce", 24, []time.Duration{coalesce / 3, 3 * coalesce}, false, false},
		{"new rooms' first sends, fewer than one a Coalesce but runs more", 24, []time.Duration{coalesce * 3 / 2}, true, false},
		{"a stream of sends, several a Coalesce", 24, []time.Duration{coalesce / 12}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := &pipelineCounter{}
			b := seededCoalescing(t, count, coalesce)
			ctx := context.Background()
			sends := tc.sends
			before := count.pipelines.Load()
			var wg sync.WaitGroup
			seqs := make(chan int64, sends)
			for i := range sends {
				time.Sleep(tc.gaps[i%len(tc.gaps)]) // the pattern of arrivals is what is under test
				room := "room"
				if tc.newRooms {
					room = fmt.Sprintf("new-%d", i)
				}
				wg.Go(func() {
					began := time.Now()
					acc, err := b.Publish(ctx, room, "alice", "hi", "", time.Now())
					if err != nil {
						t.Errorf("send %d: %v", i, err)
						return
					}
					if took := time.Since(began); !tc.shared && took > coalesce/2 {
						t.Errorf("send %d took %s: it waited for others (Coalesce %s)", i, took, coalesce)
					}
					seqs <- acc.Seq
				})
			}
			wg.Wait()
			close(seqs)
			got := slices.Sorted(func(yield func(int64) bool) {
				for s := range seqs {
					if !yield(s) {
						return
					}
				}
			})
			want := make([]int64, sends) // each new room's 1, or the seeded room's 2..
			for i := range want {
				if want[i] = 1; !tc.newRooms {
					want[i] = int64(i + 2)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("the sends' seqs: %v, want %v", got, want)
			}
			p := count.pipelines.Load() - before
			t.Logf("%d sends in %d runs", sends, p)
			if tc.shared && p > int64(sends/2) {
				t.Errorf("%d sends went in %d runs: they did not wait for one another (Coalesce %s)", sends, p, coalesce)
			}
		})
	}
}

// TestSendsReadTogetherShareARunWithoutWaiting: without Coalesce, sends
// whose goroutines are runnable at once (an instance's readers woken by one
// poll) go in one run of the script: on one core the pipeline lets them
// queue before it sends, instead of running straight after the first
// sender, alone, while the others wait their turn.
func TestSendsReadTogetherShareARunWithoutWaiting(t *testing.T) {
	count := &pipelineCounter{}
	b := seededCoalescing(t, count, 0)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const sends = 8
	ctx := context.Background()
	for round := range 5 {
		before := count.pipelines.Load()
		var wg sync.WaitGroup
		for i := range sends {
			wg.Go(func() {
				if _, err := b.Publish(ctx, "room", "alice", "hi", "", time.Now()); err != nil {
					t.Errorf("round %d, send %d: %v", round, i, err)
				}
			})
		}
		wg.Wait()
		if runs := count.pipelines.Load() - before; runs > 2 {
			t.Fatalf("round %d: %d sends runnable together went in %d runs, want at most 2", round, sends, runs)
		}
	}
}

// seededCoalescing is a broker on a Redis of its own, with count on its
// client and Options.Coalesce set, whose room "room" has had a send: a new
// room's first send runs the script twice, a seeded room's once.
func seededCoalescing(t *testing.T, count *pipelineCounter, coalesce time.Duration) *broker.Broker {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: startRedis(t).Addr()})
	rdb.AddHook(count)
	b := broker.New(rdb, broker.Options{Coalesce: coalesce})
	t.Cleanup(func() { b.Close() })
	if _, err := b.Publish(context.Background(), "room", "alice", "hi", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestANewRoomsFirstSendWaitsForOthersOnce: in a stream of sends, a new
// room's first send runs the script twice, around its reservation of seqs;
// only the first run may wait for other sends, the second goes at once.
func TestANewRoomsFirstSendWaitsForOthersOnce(t *testing.T) {
	const coalesce = 100 * time.Millisecond // far above a run's and a reservation's own time
	count := &pipelineCounter{room: "brand-new-room"}
	b := seededCoalescing(t, count, coalesce)
	ctx := context.Background()
	// The stream: sends every coalesce/100 until the new room's is answered,
	// so the second run comes as the first one or joins a wait.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(coalesce / 100)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			wg.Go(func() {
				if _, err := b.Publish(ctx, "room", "alice", "hi", "", time.Now()); err != nil {
					t.Errorf("a send of the stream: %v", err)
				}
			})
		}
	})
	defer wg.Wait()
	defer close(done)
	// Until the stream's sends wait for one another.
	retry.DoWithRetry(t, "the stream's sends share runs", 50, coalesce/5, func() (string, error) {
		runs, sends := count.pipelines.Load(), count.sends.Load()
		time.Sleep(coalesce)
		if r, s := count.pipelines.Load()-runs, count.sends.Load()-sends; s < 2*r {
			return "", fmt.Errorf("%d sends in %d runs", s, r)
		}
		return "", nil
	})
	acc, err := b.Publish(ctx, count.room, "alice", "hi", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if acc.Seq != 1 {
		t.Errorf("the new room's first send has seq %d, want 1", acc.Seq)
	}
	count.mu.Lock()
	defer count.mu.Unlock()
	if len(count.roomRuns) != 2 {
		t.Fatalf("the new room's first send went in %d runs, want 2 (before and after its reservation)", len(count.roomRuns))
	}
	between := count.roomRuns[1].Sub(count.roomRuns[0])
	t.Logf("the new room's second run went %s after its first", between)
	if between > coalesce/2 {
		t.Errorf("the new room's second run went %s after its first: it waited for other sends (Coalesce %s)", between, coalesce)
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

// TestEachSendOfABatchIsRefusedOrDeduplicatedAlone: sends that share one
// run of the script are judged one after another, as if each ran alone.
// With the pipelines held while 200 sends queue (every pipeline held, or
// every send in a held run), the backlog cap of 50
// accepts exactly 50 of 200 new messages and refuses the rest, and 50
// sends of one id to each of 4 rooms get seq 1 there, only the first of
// them not a duplicate.
func TestEachSendOfABatchIsRefusedOrDeduplicatedAlone(t *testing.T) {
	r := startRedis(t)
	for _, tc := range []struct {
		name string
		id   func(i int) string
		cap  int64
		want func(t *testing.T, accepted, duplicates, overloaded int, seqs map[int64]int)
	}{
		{"past the backlog cap", func(i int) string { return fmt.Sprint("cap-", i) }, 50,
			func(t *testing.T, accepted, duplicates, overloaded int, _ map[int64]int) {
				if accepted != 50 || overloaded != 150 || duplicates != 0 {
					t.Errorf("%d accepted, %d refused, %d duplicates; want 50, 150, 0", accepted, overloaded, duplicates)
				}
			}},
		{"one id sent 50 times to each room", func(int) string { return "same" }, 100_000,
			func(t *testing.T, accepted, duplicates, overloaded int, seqs map[int64]int) {
				if accepted != 4 || duplicates != 196 || len(seqs) != 1 || seqs[1] != 200 {
					t.Errorf("%d accepted, %d duplicates, seqs %v; want 4, 196, all seq 1", accepted, duplicates, seqs)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := r.client()
			if err := rdb.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			count := &pipelineCounter{gate: make(chan struct{})}
			rdb.AddHook(count)
			b := broker.New(rdb, broker.Options{BacklogCap: tc.cap})
			t.Cleanup(func() { b.Close() })
			release := sync.OnceFunc(func() { close(count.gate) })
			t.Cleanup(release) // before Close, which waits for the held pipelines
			var mu sync.Mutex
			var wg sync.WaitGroup
			accepted, duplicates, overloaded, seqs := 0, 0, 0, map[int64]int{}
			for i := range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					acc, err := b.Publish(context.Background(), fmt.Sprint("batch-", i%4), "alice", "hi", tc.id(i), time.Now())
					mu.Lock()
					defer mu.Unlock()
					switch {
					case errors.Is(err, broker.ErrOverloaded):
						overloaded++
					case err != nil:
						t.Errorf("send %d: %v", i, err)
					case acc.Duplicate:
						duplicates++
						seqs[acc.Seq]++
					default:
						accepted++
						seqs[acc.Seq]++
					}
				}()
			}
			// Every pipeline held, or every send in a held run: one gathering
			// pipeline may take all that is queued at once.
			retry.DoWithRetry(t, "the sends queued behind held pipelines", 100, 20*time.Millisecond, func() (string, error) {
				if p, s := count.pipelines.Load(), count.sends.Load(); p < 4 && s < 200 {
					return "", fmt.Errorf("%d pipelines held with %d sends", p, s)
				}
				return "", nil
			})
			release()
			wg.Wait()
			tc.want(t, accepted, duplicates, overloaded, seqs)
			if m := count.most.Load(); m < 2 {
				t.Errorf("at most %d send in a run of the script: nothing was batched", m)
			}
		})
	}
}

// A send whose caller gave up before the reply (its pipeline held past the
// caller's deadline) is answered later without touching the sends after
// it: each of those gets its own message's seq, none an earlier send's
// answer, whichever pooled call it runs on.
func TestAnAnswerForASendGivenUpOnReachesNoOtherSend(t *testing.T) {
	r := startRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	held := &pipelineCounter{}
	rdb.AddHook(held)
	b := broker.New(rdb, broker.Options{})
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	// Seeded first, so that a held send is stored by its one script run.
	if _, err := b.Publish(ctx, "late", "alice", "first", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	held.gate = make(chan struct{}) // read by the pipelines after the sends below reach them

	const givenUp, after = 20, 200
	var wg sync.WaitGroup
	for i := range givenUp {
		wg.Go(func() {
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if _, err := b.Publish(short, "late", "alice", fmt.Sprint("given up ", i), "", time.Now()); err == nil {
				t.Errorf("send %d acked through a held pipeline", i)
			}
		})
	}
	wg.Wait()
	// The held pipelines go on now; the sends below run while their
	// answers arrive, and run on calls the pool gives out meanwhile.
	close(held.gate)
	last := int64(0)
	for i := range after {
		acc, err := b.Publish(ctx, "late", "alice", fmt.Sprint("then ", i), "", time.Now())
		if err != nil {
			t.Fatalf("send %d after: %v", i, err)
		}
		if acc.Seq <= last {
			t.Fatalf("send %d after: seq %d, not above the seq %d of the send before it", i, acc.Seq, last)
		}
		last = acc.Seq
	}
	if last != 1+givenUp+after {
		t.Fatalf("the last send has seq %d, want %d: the sends given up on ran, each once, before it", last, 1+givenUp+after)
	}
}
