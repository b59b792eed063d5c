package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sends are coalesced: a few pipelines run at once, and the sends that
// arrive while they are busy go together in the next one, one run of the
// publish script for the whole batch (on a cluster, one per partition, the
// runs of one shard in one pipeline to it), so a busy instance pays one
// round trip, one script call and, with MinReplicas, one WAIT per batch
// (per shard) rather than per send. A send to an idle instance goes at
// once, after the goroutines already runnable have queued theirs. Each
// send's reply is its own; WAIT, after the scripts on their connection,
// covers all of them.
//
// With Options.Coalesce, a batch also waits that long for more while at
// least one more send is expected in it, by the instance's recent rate of
// sends: on 1000 rooms × 10 at 1,500 sends a second most batches held one
// send, and each run's fixed cost (the script call, INFO, a round trip of
// system calls on both sides, a pub/sub push) was most of Redis's work a
// send (docs/log.md). Waiting whenever the last send was less than that
// back instead held 40 % of batches at 500 sends a second, for half a send
// more each.
const (
	pipelineCount = 4
	batchMax      = 128
)

type pipelines struct {
	b     *Broker
	calls chan *call
	done  chan struct{}
	wg    sync.WaitGroup

	// One pipeline gathers a batch at a time while the others run theirs,
	// so a lingering batch is not split between them.
	gather sync.Mutex
	last   time.Time   // when the last batch closed
	rate   float64     // sends a second, decaying over rateMemory lingers
	timer  *time.Timer // the linger's, stopped between batches
}

// rateMemory is how many Coalesce periods the rate of sends remembers
// (its time constant): long enough that at 500 sends a second and 1 ms a
// few sends close together are not taken for a stream (2 % of batches
// waited, in a simulation of random arrivals; 13 % at 4), short enough
// that a lone send after a quiet spell finds the rate decayed to nothing.
const rateMemory = 8

// count adds n sends at now to the rate, decayed for the time since the
// last count, and returns it.
func (p *pipelines) count(now time.Time, n int) float64 {
	tau := rateMemory * p.b.opts.Coalesce.Seconds()
	return p.rate*math.Exp(-now.Sub(p.last).Seconds()/tau) + float64(n)/tau
}

// call is one run of the publish script and its outcome.
type call struct {
	part  int
	keys  []string
	args  []any
	again bool // not the send's first run

	seq, status, headroom int64
	epoch                 string
	err                   error
	ready                 chan struct{}
}

func startPipelines(b *Broker) *pipelines {
	p := &pipelines{b: b, calls: make(chan *call, batchMax), done: make(chan struct{}), timer: time.NewTimer(time.Hour)}
	p.timer.Stop()
	p.wg.Add(pipelineCount)
	for range pipelineCount {
		go p.loop()
	}
	return p
}

func (p *pipelines) stop() {
	close(p.done)
	p.wg.Wait()
}

func (p *pipelines) loop() {
	defer p.wg.Done()
	batch := make([]*call, 0, batchMax)
	for {
		var ok bool
		if batch, ok = p.next(batch[:0]); !ok {
			return
		}
		p.b.exec(batch)
	}
}

// next gathers a batch: the next send, what is queued behind it and, if
// more are expected soon, those arriving within Options.Coalesce (else
// those the goroutines already runnable queue). A send's
// run after its first (a new room's, once Postgres reserved its seqs) has
// waited its turn already: it does not wait, and ends a wait it joins. It
// is false once the broker closes.
func (p *pipelines) next(batch []*call) ([]*call, bool) {
	p.gather.Lock()
	defer p.gather.Unlock()
	select {
	case c := <-p.calls:
		batch = append(batch, c)
	case <-p.done:
		return nil, false
	}
	linger := p.b.opts.Coalesce
	now := time.Now()
	lingers := linger > 0 && !batch[0].again && p.count(now, 1)*linger.Seconds() >= 1
	if !lingers && !batch[0].again {
		// The readers already runnable (woken by the same poll, or while
		// the core was busy) get to queue their sends first, to share this
		// run: on one core a send's pipeline otherwise runs straight after
		// its reader, alone (docs/log.md, 2026-12-07, night: a fifth fewer
		// runs at 1,500 sends a second with PUBLISH_COALESCE=0, for 0.1 ms
		// of p50: the round trip no longer overlaps what runs before it).
		runtime.Gosched()
	}
	if lingers {
		p.timer.Reset(linger)
	wait:
		for len(batch) < batchMax {
			select {
			case c := <-p.calls:
				batch = append(batch, c)
				if c.again {
					break wait
				}
			case <-p.timer.C:
				break wait
			case <-p.done:
				return nil, false
			}
		}
		p.timer.Stop()
		now = time.Now()
	}
gather:
	for len(batch) < batchMax {
		select {
		case c := <-p.calls:
			batch = append(batch, c)
		default:
			break gather
		}
	}
	if linger > 0 {
		// Only first runs: a new room's second comes straight after its
		// first, and counted, 500 new rooms a second looked like a stream.
		first := 0
		for _, c := range batch {
			if !c.again {
				first++
			}
		}
		p.rate = p.count(now, first)
	}
	p.last = now
	return batch, true
}

// run evaluates the publish script for partition part in the next
// pipeline and waits for its reply. A reply that does not come within ctx is
// reported as an error; the script may still run, as when a reply is lost
// (a retry with the same id is deduplicated). again: the send ran the
// script before.
func (b *Broker) run(ctx context.Context, part int, keys []string, args []any, again bool) (acc Accepted, status, headroom int64, err error) {
	c := calls.Get().(*call)
	c.part, c.keys, c.args, c.again = part, keys, args, again
	// Given up on (ctx, closing), c stays with the pipeline, which may still
	// answer it: only a call answered goes back to the pool.
	select {
	case b.pipes.calls <- c:
	case <-ctx.Done():
		return Accepted{}, 0, 0, fmt.Errorf("queue the publish script: %w", ctx.Err())
	case <-b.pipes.done:
		return Accepted{}, 0, 0, errors.New("broker closed")
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		return Accepted{}, 0, 0, fmt.Errorf("publish script: no reply: %w", ctx.Err())
	case <-b.pipes.done:
		return Accepted{}, 0, 0, errors.New("broker closed")
	}
	acc, status, headroom, err = Accepted{Seq: c.seq, Epoch: c.epoch}, c.status, c.headroom, c.err
	*c = call{ready: c.ready}
	calls.Put(c)
	if err != nil {
		return Accepted{}, 0, 0, err
	}
	return acc, status, headroom, nil
}

// calls keeps answered calls, each with its channel, for the next sends:
// made afresh they were about 220 bytes of each send's allocations.
var calls = sync.Pool{New: func() any { return &call{ready: make(chan struct{}, 1)} }}

// A cluster refuses a script whose slot is elsewhere (MOVED), moving (ASK,
// TRYAGAIN: the keys are on both sides until the slot is moved) or not
// served (CLUSTERDOWN) before running any of it: such a run is sent again,
// to the slot's owner once the client has learnt it, for about 2 s.
const (
	redirectAttempts = 12
	redirectWaitMin  = 10 * time.Millisecond
	redirectWaitMax  = 250 * time.Millisecond
)

func redirected(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// exec runs a batch: one run of the script per partition, the runs of the
// partitions one primary holds in one pipeline to it. Runs refused before
// they ran (redirected) go again after a wait.
func (b *Broker) exec(batch []*call) {
	ctx := context.Background() // each command is bounded by the client's timeouts
	if b.cluster == nil {
		// One Redis: one partition, never redirected, so no grouping by
		// partition and node nor retry round, whose maps and closures
		// were most of a batch's bytes at 1,500 sends a second, when a
		// batch holds one or two.
		_, _ = b.execNode(ctx, b.one, []int{0}, map[int][]*call{0: batch})
		return
	}
	byPart := map[int][]*call{}
	for _, c := range batch {
		byPart[c.part] = append(byPart[c.part], c)
	}
	parts := slices.Sorted(maps.Keys(byPart))
	wait := redirectWaitMin
	for attempt := 1; ; attempt++ {
		var retry []int
		var lastErr error
		var mu sync.Mutex
		var wg sync.WaitGroup
		nodes := b.nodes(ctx, parts, byPart)
		for node, ps := range nodes {
			run := func() {
				r, err := b.execNode(ctx, node, ps, byPart)
				mu.Lock()
				retry, lastErr = append(retry, r...), cmp.Or(err, lastErr)
				mu.Unlock()
			}
			if len(nodes) == 1 {
				run() // one node: no goroutine to start and wait for per batch
			} else {
				wg.Go(run)
			}
		}
		wg.Wait()
		if len(retry) == 0 {
			return
		}
		if attempt == redirectAttempts {
			for _, p := range retry {
				for _, c := range byPart[p] {
					c.finish(nil, fmt.Errorf("partition %d: %w", p, lastErr), nil, b)
				}
			}
			return
		}
		b.cluster.ReloadState(ctx)
		time.Sleep(wait)
		wait = min(2*wait, redirectWaitMax)
		parts = retry
	}
}

// nodes groups a cluster's partitions by the primary that holds them, the
// slot's owner as the client knows it: WAIT must go on the connection of
// the write, so scripts go to it directly, not through the cluster client's
// routing. A partition whose owner is unknown has its calls failed.
func (b *Broker) nodes(ctx context.Context, parts []int, byPart map[int][]*call) map[*redis.Client][]int {
	out := map[*redis.Client][]int{}
	for _, p := range parts {
		node, err := b.cluster.MasterForKey(ctx, b.keys.stream(p))
		if err != nil {
			for _, c := range byPart[p] {
				c.finish(nil, fmt.Errorf("find the primary of partition %d: %w", p, err), nil, b)
			}
			continue
		}
		out[node] = append(out[node], p)
	}
	return out
}

// execNode runs partitions ps on node in one pipeline, one script run each,
// then WAIT on the same connection, loading the script first if the node
// lacks it (then nothing ran). It returns the partitions the node
// redirected, and why.
func (b *Broker) execNode(ctx context.Context, node *redis.Client, ps []int, byPart map[int][]*call) (retry []int, why error) {
	for loaded := false; ; loaded = true {
		pipe := node.Pipeline()
		evals := make([]*redis.Cmd, len(ps))
		for i, p := range ps {
			evals[i] = b.script(ctx, p, byPart[p])
			_ = pipe.Process(ctx, evals[i]) // queued: its outcome is the command's
		}
		var wait *redis.Cmd
		if b.opts.MinReplicas > 0 {
			// Pipeliner lacks Wait; the reply must come within the read timeout.
			wait = pipe.Do(ctx, "wait", b.opts.MinReplicas, b.opts.ReplicaTimeout.Milliseconds())
		}
		_, execErr := pipe.Exec(ctx)
		var unloaded []int
		for i, p := range ps {
			eval, batch := evals[i], byPart[p]
			err := eval.Err()
			if err == nil && eval.Val() == nil {
				// go-redis leaves the commands untouched when no connection
				// could be had (a dial to a failing-over primary): nothing ran.
				err = cmp.Or(execErr, errors.New("no reply"))
			}
			switch {
			case err != nil && !loaded && redis.HasErrorPrefix(err, "NOSCRIPT"):
				unloaded = append(unloaded, p)
				continue
			case err != nil && b.cluster != nil && redirected(err):
				retry, why = append(retry, p), err
				continue
			case err != nil && b.cluster != nil:
				b.cluster.ReloadState(ctx) // the shard may have failed over
			}
			replies, ok := eval.Val().([]any)
			if err == nil && (!ok || len(replies) != len(batch)) {
				err = fmt.Errorf("publish script answered %v to %d sends", eval.Val(), len(batch))
			}
			for i, c := range batch {
				if err != nil {
					c.finish(nil, err, wait, b)
					continue
				}
				refused, _ := replies[i].(error) // OVERLOADED or NOREPLICAS: this send alone
				c.finish(replies[i], refused, wait, b)
			}
		}
		releaseArgs(evals)
		if len(unloaded) == 0 {
			return retry, why
		}
		if err := publishScript.Load(ctx, node).Err(); err != nil {
			err = fmt.Errorf("load publish script: %w", err)
			for _, p := range unloaded {
				for _, c := range byPart[p] {
					c.finish(nil, err, nil, b)
				}
			}
			return retry, why
		}
		ps = unloaded
	}
}

// argvs keeps the script runs' argument slices (some 300 bytes a send) for
// the next runs: once a pipeline's replies are read, go-redis holds nothing
// of its commands.
var argvs = sync.Pool{New: func() any { return new([]any) }}

// releaseArgs pools the arguments of runs whose replies are read.
func releaseArgs(evals []*redis.Cmd) {
	for _, e := range evals {
		argv := e.Args()
		clear(argv)
		argv = argv[:0]
		argvs.Put(&argv)
	}
}

// script is one run of publish.lua for calls, all of partition p: EVALSHA
// with the KEYS and ARGV every message of the run shares, each followed by
// the messages' own, made in one slice (go-redis's EvalSha would copy keys
// and arguments made apart into another: bytes a send, and collections).
// The primary and fence last seen are read as the run is sent, the newest
// any of its sends could have had.
func (b *Broker) script(ctx context.Context, p int, calls []*call) *redis.Cmd {
	const firstKey = 3 // after the command, the hash and the count of keys
	keys, args := 2, 8
	for _, c := range calls {
		keys, args = keys+len(c.keys), args+len(c.args)
	}
	argv := slices.Grow((*argvs.Get().(*[]any))[:0], firstKey+keys+args)
	argv = append(argv, "evalsha", publishScript.Hash(), keys, b.keys.stream(p), b.keys.fence(p))
	for _, c := range calls {
		for _, k := range c.keys {
			argv = append(argv, k)
		}
	}
	replid, fence := b.seen(p)
	argv = append(argv, b.opts.HistorySize, int(b.opts.DedupeTTL.Seconds()), int(b.opts.RoomTTL.Seconds()),
		b.opts.BacklogCap, b.opts.MinReplicas, replid, fence, b.keys.publishCommand())
	for _, c := range calls {
		argv = append(argv, c.args...)
	}
	cmd := redis.NewCmd(ctx, argv...)
	cmd.SetFirstKeyPos(firstKey)
	return cmd
}

// finish reads the script's reply and, for an accepted message, the WAIT's.
func (c *call) finish(reply any, err error, wait *redis.Cmd, b *Broker) {
	// The answer is the last the pipeline does with c: its sender may
	// reuse it at once. A call is finished once.
	defer func() { c.ready <- struct{}{} }()
	opts := b.opts
	switch {
	case err != nil && redis.HasErrorPrefix(err, "OVERLOADED"):
		c.err = fmt.Errorf("%w (%v)", ErrOverloaded, err)
		return
	case err != nil && redis.HasErrorPrefix(err, "NOREPLICAS"):
		c.err = fmt.Errorf("%w: nothing written (%v)", ErrNotReplicated, err)
		return
	case err != nil:
		c.err = err
		return
	}
	res, ok := reply.([]any)
	if !ok || len(res) != 5 {
		c.err = fmt.Errorf("publish script answered %v", reply)
		return
	}
	c.seq, _ = res[0].(int64)
	c.status, _ = res[1].(int64)
	// Recorded before the caller looks again; but not a stale primary's
	// (statusFence): taken for the primary last written to, it would pass
	// the script's check at the next send, which would count its rooms on
	// from their stale state if the fence failed (Postgres down).
	if marker, _ := res[4].(string); c.status != statusFence {
		b.saw(c.part, marker)
	}
	c.epoch, _ = res[2].(string)
	c.headroom, _ = res[3].(int64)
	if wait == nil || c.status != statusAccepted {
		return
	}
	n, err := wait.Int64()
	if err != nil {
		c.err = fmt.Errorf("wait for %d replicas: %w", opts.MinReplicas, err)
	} else if n < int64(opts.MinReplicas) {
		c.err = fmt.Errorf("%w: %d of %d within %s", ErrNotReplicated, n, opts.MinReplicas, opts.ReplicaTimeout)
	}
}
