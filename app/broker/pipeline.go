package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Sends are coalesced: a few pipelines run at once, and the sends that
// arrive while they are busy go together in the next one, one run of the
// publish script for the whole batch, so a busy instance pays one round
// trip, one script call and, with MinReplicas, one WAIT per batch rather
// than per send. A send to an idle instance goes at once. Each send's reply
// is its own; WAIT, after the script on its connection, covers all of it.
const (
	pipelineCount = 4
	batchMax      = 128
)

type pipelines struct {
	b     *Broker
	calls chan *call
	done  chan struct{}
	wg    sync.WaitGroup
}

// call is one run of the publish script and its outcome.
type call struct {
	keys []string
	args []any

	seq, status, headroom int64
	epoch                 string
	err                   error
	ready                 chan struct{}
}

func startPipelines(b *Broker) *pipelines {
	p := &pipelines{b: b, calls: make(chan *call, batchMax), done: make(chan struct{})}
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
		select {
		case c := <-p.calls:
			batch = append(batch[:0], c)
		case <-p.done:
			return
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
		p.b.exec(batch)
	}
}

// run evaluates the publish script in the next pipeline and waits for its
// reply. A reply that does not come within ctx is reported as an error; the
// script may still run, as when a reply is lost (a retry with the same id is
// deduplicated).
func (b *Broker) run(ctx context.Context, keys []string, args []any) (acc Accepted, status, headroom int64, err error) {
	c := &call{keys: keys, args: args, ready: make(chan struct{})}
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
	if c.err != nil {
		return Accepted{}, 0, 0, c.err
	}
	return Accepted{Seq: c.seq, Epoch: c.epoch}, c.status, c.headroom, nil
}

// exec runs a batch in one run of the script, loading it first if Redis
// lacks it (then nothing of the batch ran).
func (b *Broker) exec(batch []*call) {
	ctx := context.Background() // each command is bounded by the client's timeouts
	keys := make([]string, 0, len(batch)*len(batch[0].keys))
	args := make([]any, 0, len(batch)*len(batch[0].args))
	for _, c := range batch {
		keys, args = append(keys, c.keys...), append(args, c.args...)
	}
	for loaded := false; ; loaded = true {
		pipe := b.rdb.Pipeline()
		eval := publishScript.EvalSha(ctx, pipe, keys, args...)
		var wait *redis.Cmd
		if b.opts.MinReplicas > 0 {
			// Pipeliner lacks Wait; the reply must come within the read timeout.
			wait = pipe.Do(ctx, "wait", b.opts.MinReplicas, b.opts.ReplicaTimeout.Milliseconds())
		}
		_, execErr := pipe.Exec(ctx)
		err := eval.Err()
		if err == nil && eval.Val() == nil {
			// go-redis leaves the commands untouched when no connection
			// could be had (a dial to a failing-over primary): nothing ran.
			err = cmp.Or(execErr, errors.New("no reply"))
		}
		if err != nil && !loaded && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := publishScript.Load(ctx, b.rdb).Err(); err != nil {
				err = fmt.Errorf("load publish script: %w", err)
				for _, c := range batch {
					c.err = err
					close(c.ready)
				}
				return
			}
			continue
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
		return
	}
}

// finish reads the script's reply and, for an accepted message, the WAIT's.
func (c *call) finish(reply any, err error, wait *redis.Cmd, b *Broker) {
	defer close(c.ready)
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
	marker, _ := res[4].(string)
	b.saw(marker) // before the caller looks again
	c.seq, _ = res[0].(int64)
	c.status, _ = res[1].(int64)
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
