package broker

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// persistGroup is the consumer group whose members write the persist stream
// to Postgres; every instance joins it under its own name.
const persistGroup = "store"

// PersistEntry is one queued message frame and its stream id for the ack.
// Frame is the string Redis's reply was read into: protocol.ParseMessage
// takes its strings from it without a copy.
type PersistEntry struct {
	ID    string
	Frame string
}

// EnsureGroup creates the consumer group on every persist stream (from the
// stream's start, so nothing queued before the first instance came up is
// skipped). On a cluster with a shard down, the other partitions' groups
// are created all the same, and the error names the rest.
func (b *Broker) EnsureGroup(ctx context.Context) error {
	cmds := b.eachPartition(ctx, func(c doer, p int) *redis.Cmd {
		return raw(ctx, c, 2, "xgroup", "create", b.keys.stream(p), persistGroup, "0", "mkstream")
	})
	var errs []error
	for p, c := range cmds {
		if err := c.Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			errs = append(errs, fmt.Errorf("create consumer group %s on %s: %w", persistGroup, b.keys.stream(p), err))
		}
	}
	return errors.Join(errs...)
}

// A cluster's persist streams are in as many slots as there are
// partitions, and a command reads one slot: ReadPersist polls them all in
// one pipeline per shard, sooner while they have entries.
const (
	pollMin = 20 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// ReadPersist takes up to count new entries for consumer (on a cluster, up
// to count of each partition), waiting up to block. On a cluster with a
// shard down, the entries of the partitions that answered come with the
// error of those that did not: they are the consumer's, to be written.
func (b *Broker) ReadPersist(ctx context.Context, consumer string, count int, block time.Duration) ([]PersistEntry, error) {
	if b.cluster == nil {
		return b.readPersist(ctx, consumer, count, block)
	}
	deadline, wait := time.Now().Add(block), pollMin
	for {
		out, err := b.readPersist(ctx, consumer, count, -1)
		left := time.Until(deadline)
		if err != nil || len(out) > 0 || left <= 0 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(min(wait, left)):
		}
		wait = min(2*wait, pollMax)
	}
}

// readPersist reads every persist stream once: the one Redis's waiting up
// to block, a cluster's in a pipeline (block is then negative: no wait).
// The command is sent raw: go-redis's XReadGroup reads each entry's fields
// into a map of their own, about 370 bytes an entry, the largest part of
// what the persist path allocated a message (docs/log.md, 2026-12-06).
func (b *Broker) readPersist(ctx context.Context, consumer string, count int, block time.Duration) ([]PersistEntry, error) {
	read := func(c doer, p int) *redis.Cmd {
		args := []any{"xreadgroup", "group", persistGroup, consumer, "count", count}
		if block >= 0 {
			args = append(args, "block", block.Milliseconds())
		}
		return raw(ctx, c, len(args)+1, append(args, "streams", b.keys.stream(p), ">")...)
	}
	var cmds []*redis.Cmd
	if b.cluster == nil {
		cmds = []*redis.Cmd{read(b.blocking(block), 0)}
	} else {
		cmds = b.eachPartition(ctx, read)
	}
	var out []PersistEntry
	var errs []error
	for p, c := range cmds {
		res, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
			// Redis lost the group (restarted without its data): recreate it.
			return out, b.EnsureGroup(ctx)
		case err != nil:
			// The other partitions' entries are this consumer's now: they
			// are returned, to be written, with the error.
			errs = append(errs, fmt.Errorf("read %s: %w", b.keys.stream(p), err))
			continue
		}
		// RESP3 answers a map of stream to entries, RESP2 pairs of them.
		switch streams := res.(type) {
		case map[any]any:
			for _, msgs := range streams {
				out = b.rawEntries(out, p, msgs)
			}
		case []any:
			for _, s := range streams {
				if pair, _ := s.([]any); len(pair) == 2 {
					out = b.rawEntries(out, p, pair[1])
				}
			}
		}
	}
	return out, errors.Join(errs...)
}

// eachPartition sends cmd for every partition in one pipeline and returns
// each command with its own outcome. When the pipeline fails (a node
// unreachable), the replies of the others still count, so that while one
// shard is down the others' partitions are served; a command left without
// reply or error (go-redis v9.14 does not mark them) gets the pipeline's.
func (b *Broker) eachPartition(ctx context.Context, cmd func(c doer, p int) *redis.Cmd) []*redis.Cmd {
	cmds := make([]*redis.Cmd, b.keys.count())
	_, err := b.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range cmds {
			cmds[p] = cmd(pipe, p)
		}
		return nil
	})
	if failed(err) {
		for _, c := range cmds {
			if c.Err() == nil && c.Val() == nil {
				c.SetErr(err)
			}
		}
	}
	return cmds
}

// doer sends a command: a client or a pipeline.
type doer interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// raw sends args on c as a raw command whose key is args[pos]. A cluster
// client routes a raw command by its second word unless told (go-redis
// v9.14): for XREADGROUP and XGROUP that is not the key, so every
// partition's command went to one node and was redirected from there, and
// with that node down, none was served.
func raw(ctx context.Context, c doer, pos int, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(int8(pos))
	_ = c.Process(ctx, cmd) // its outcome is the command's
	return cmd
}

// blocking is the client for a read that blocks up to block on one Redis:
// go-redis gives its own blocking commands a read deadline of block + 10 s,
// past the client's short ReadTimeout, and a raw command gets it from the
// client, so this is the client again, on the same connections, with that
// timeout (made once for the writer's block).
func (b *Broker) blocking(block time.Duration) doer {
	if b.one == nil || block < 0 {
		return b.rdb
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.blocked == nil || b.blockFor != block {
		timeout := block + 10*time.Second
		if block == 0 {
			timeout = -1 // blocks for ever: no deadline, as go-redis gives it
		}
		b.blocked, b.blockFor = b.one.WithTimeout(timeout), block
	}
	return b.blocked
}

// rawEntries appends to out the persist entries of msgs, a raw reply's list
// of [id, [field, value, ...]] (an entry deleted since has no fields).
func (b *Broker) rawEntries(out []PersistEntry, p int, msgs any) []PersistEntry {
	list, _ := msgs.([]any)
	for _, m := range list {
		kv, _ := m.([]any)
		if len(kv) != 2 {
			continue
		}
		id, _ := kv[0].(string)
		fields, _ := kv[1].([]any)
		for i := 0; i+1 < len(fields); i += 2 {
			if k, _ := fields[i].(string); k == "f" {
				f, _ := fields[i+1].(string)
				out = append(out, PersistEntry{ID: b.keys.entryID(p, id), Frame: f})
			}
		}
	}
	return out
}

// ClaimPersist takes over entries another consumer (or this one, before a
// restart) was given and has not acked for minIdle: an instance killed after
// reading them must not lose them. lost names pending entries whose content
// is gone from the stream: the writers delete only what they stored, so it
// stays empty unless something else deleted or trimmed the stream. On a
// cluster each partition gives up to count, and what the partitions that
// answered gave comes with the error of those that did not.
func (b *Broker) ClaimPersist(ctx context.Context, consumer string, minIdle time.Duration, count int) (claimed []PersistEntry, lost []string, err error) {
	// Raw XAUTOCLAIM: go-redis drops the reply's third part, the deleted ids.
	cmds := b.eachPartition(ctx, func(c doer, p int) *redis.Cmd {
		return raw(ctx, c, 1, "xautoclaim", b.keys.stream(p), persistGroup, consumer, minIdle.Milliseconds(), "0-0", "count", count)
	})
	var errs []error
	for p, c := range cmds {
		res, err := c.Slice()
		if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
			continue
		}
		if err == nil && len(res) < 2 {
			err = fmt.Errorf("reply of %d parts", len(res))
		}
		if err != nil {
			// What the other partitions gave is returned, to be written.
			errs = append(errs, fmt.Errorf("claim idle entries of %s: %w", b.keys.stream(p), err))
			continue
		}
		claimed = b.rawEntries(claimed, p, res[1])
		if len(res) > 2 {
			deleted, _ := res[2].([]any)
			for _, d := range deleted {
				if id, ok := d.(string); ok {
					lost = append(lost, b.keys.entryID(p, id))
				}
			}
		}
	}
	return claimed, lost, errors.Join(errs...)
}

// byPartition splits entry ids by partition, in stream ids.
func (b *Broker) byPartition(ids []string) (map[int][]string, error) {
	out := map[int][]string{}
	for _, s := range ids {
		p, id, err := b.keys.splitEntryID(s)
		if err != nil {
			return nil, err
		}
		out[p] = append(out[p], id)
	}
	return out, nil
}

// AckPersist marks entries as written to Postgres and deletes them, in one
// transaction per stream: the stream then holds exactly the entries not
// yet stored, so nothing is ever trimmed before every writer has stored it
// and its length is the backlog.
func (b *Broker) AckPersist(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	parts, err := b.byPartition(ids)
	if err != nil {
		return fmt.Errorf("ack %d persist entries: %w", len(ids), err)
	}
	// A transaction covers one slot: one per partition, at once.
	errs := make(chan error, len(parts))
	for p, ids := range parts {
		go func() {
			_, err := b.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.XAck(ctx, b.keys.stream(p), persistGroup, ids...)
				pipe.XDel(ctx, b.keys.stream(p), ids...)
				return nil
			})
			if err != nil {
				err = fmt.Errorf("ack %d entries of %s: %w", len(ids), b.keys.stream(p), err)
			}
			errs <- err
		}()
	}
	var all []error
	for range parts {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// PersistBacklog is how many queued messages are not yet written to
// Postgres, on every stream.
func (b *Broker) PersistBacklog(ctx context.Context) (int64, error) {
	cmds := make([]*redis.IntCmd, b.keys.count())
	_, err := b.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p := range cmds {
			cmds[p] = pipe.XLen(ctx, b.keys.stream(p))
		}
		return nil
	})
	if failed(err) {
		return 0, fmt.Errorf("length of the persist streams: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// failed tells whether a pipeline failed as a whole: an error reply is its
// command's own, but a connection's failure may leave commands without an
// error of their own (go-redis v9.14 does not mark them), so none is trusted.
func failed(err error) bool {
	var reply redis.Error
	return err != nil && !errors.As(err, &reply)
}

func (b *Broker) entries(p int, msgs []redis.XMessage) []PersistEntry {
	out := make([]PersistEntry, 0, len(msgs))
	for _, m := range msgs {
		if f, ok := m.Values["f"].(string); ok {
			out = append(out, PersistEntry{ID: b.keys.entryID(p, m.ID), Frame: f})
		}
	}
	return out
}

//go:embed requeue.lua
var requeueSource string

var requeueScript = redis.NewScript(requeueSource)

// Requeue puts back on their streams those of entries they no longer have,
// and returns how many. A writer that read entries and then waited for
// Postgres is the only holder of them once Redis has lost them; on the
// stream again they are where catch-ups and retries look for messages not
// stored yet.
func (b *Broker) Requeue(ctx context.Context, entries []PersistEntry) (int, error) {
	parts := map[int][]any{}
	for _, e := range entries {
		p, id, err := b.keys.splitEntryID(e.ID)
		if err != nil {
			return 0, fmt.Errorf("requeue %d entries: %w", len(entries), err)
		}
		parts[p] = append(parts[p], id, e.Frame)
	}
	total := 0
	for p, args := range parts {
		n, err := requeueScript.Run(ctx, b.rdb, []string{b.keys.stream(p)}, args...).Int()
		if err != nil {
			return total, fmt.Errorf("requeue %d entries on %s: %w", len(args)/2, b.keys.stream(p), err)
		}
		total += n
	}
	return total, nil
}

// backlogPage is how many persist entries one XRANGE of a scan reads.
const backlogPage = 1000

// scanBacklog hands each message of the room's stream still waiting for
// Postgres to fn, oldest first, until fn returns false. The stream is every
// room's (of the partition), so this is for the rare questions that
// Postgres cannot answer yet (a resume over messages not stored yet, a
// retry's id after a reseed), never for the hot path; it is bounded by
// BacklogCap.
func (b *Broker) scanBacklog(ctx context.Context, room string, fn func(protocol.Message, string) bool) error {
	p := b.keys.part(room)
	start := "-"
	for {
		msgs, err := b.rdb.XRangeN(ctx, b.keys.stream(p), start, "+", backlogPage).Result()
		if err != nil {
			return fmt.Errorf("scan %s: %w", b.keys.stream(p), err)
		}
		for _, e := range b.entries(p, msgs) {
			m, err := protocol.ParseMessage(e.Frame)
			if err == nil && !fn(m, e.Frame) {
				return nil
			}
		}
		if len(msgs) < backlogPage {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Pending returns the room's messages with after < seq <= upto that are
// queued for Postgres and not stored yet, in seq order.
func (b *Broker) Pending(ctx context.Context, room string, after, upto int64) ([]protocol.Delivery, error) {
	var out []protocol.Delivery
	err := b.scanBacklog(ctx, room, func(m protocol.Message, frame string) bool {
		if m.Room == room && m.Seq > after && m.Seq <= upto {
			out = append(out, protocol.Delivery{Room: room, Seq: m.Seq, Frame: []byte(frame)})
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("pending messages of %s after %d: %w", room, after, err)
	}
	// A message can stand twice in the backlog (put back by a writer while
	// its first entry was still there): once is enough.
	slices.SortStableFunc(out, func(a, b protocol.Delivery) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b protocol.Delivery) bool { return a.Seq == b.Seq }), nil
}

// pendingSend finds a sender's message by its id in the persist backlog.
func (b *Broker) pendingSend(ctx context.Context, room, user, id string) (m protocol.Message, found bool, err error) {
	err = b.scanBacklog(ctx, room, func(p protocol.Message, _ string) bool {
		if p.Room == room && p.User == user && p.ID == id {
			m, found = p, true
		}
		return !found
	})
	return m, found, err
}
