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
type PersistEntry struct {
	ID    string
	Frame []byte
}

// EnsureGroup creates the consumer group (from the stream's start, so nothing
// queued before the first instance came up is skipped).
func (b *Broker) EnsureGroup(ctx context.Context) error {
	err := b.rdb.XGroupCreateMkStream(ctx, PersistStream, persistGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s on %s: %w", persistGroup, PersistStream, err)
	}
	return nil
}

// ReadPersist takes up to count new entries for consumer, waiting up to block.
func (b *Broker) ReadPersist(ctx context.Context, consumer string, count int, block time.Duration) ([]PersistEntry, error) {
	res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: persistGroup, Consumer: consumer, Streams: []string{PersistStream, ">"}, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		// Redis lost the group (restarted without its data): recreate it.
		return nil, b.EnsureGroup(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", PersistStream, err)
	}
	var out []PersistEntry
	for _, s := range res {
		out = append(out, entries(s.Messages)...)
	}
	return out, nil
}

// ClaimPersist takes over entries another consumer (or this one, before a
// restart) was given and has not acked for minIdle: an instance killed after
// reading them must not lose them. lost names pending entries whose content
// is gone from the stream: the writers delete only what they stored, so it
// stays empty unless something else deleted or trimmed the stream.
func (b *Broker) ClaimPersist(ctx context.Context, consumer string, minIdle time.Duration, count int) (claimed []PersistEntry, lost []string, err error) {
	// Raw XAUTOCLAIM: go-redis drops the reply's third part, the deleted ids.
	res, err := b.rdb.Do(ctx, "xautoclaim", PersistStream, persistGroup, consumer, minIdle.Milliseconds(), "0-0", "count", count).Slice()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("claim idle entries of %s: %w", PersistStream, err)
	}
	if len(res) < 2 {
		return nil, nil, fmt.Errorf("claim idle entries of %s: reply of %d parts", PersistStream, len(res))
	}
	msgs, _ := res[1].([]any)
	for _, m := range msgs {
		kv, _ := m.([]any)
		if len(kv) != 2 {
			continue
		}
		id, _ := kv[0].(string)
		fields, _ := kv[1].([]any)
		for i := 0; i+1 < len(fields); i += 2 {
			if k, _ := fields[i].(string); k == "f" {
				f, _ := fields[i+1].(string)
				claimed = append(claimed, PersistEntry{ID: id, Frame: []byte(f)})
			}
		}
	}
	if len(res) > 2 {
		deleted, _ := res[2].([]any)
		for _, d := range deleted {
			if id, ok := d.(string); ok {
				lost = append(lost, id)
			}
		}
	}
	return claimed, lost, nil
}

// AckPersist marks entries as written to Postgres and deletes them, in one
// transaction: the stream then holds exactly the entries not yet stored, so
// nothing is ever trimmed before every writer has stored it and its length
// is the backlog.
func (b *Broker) AckPersist(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, PersistStream, persistGroup, ids...)
		p.XDel(ctx, PersistStream, ids...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack %d entries of %s: %w", len(ids), PersistStream, err)
	}
	return nil
}

// PersistBacklog is how many queued messages are not yet written to Postgres.
func (b *Broker) PersistBacklog(ctx context.Context) (int64, error) {
	n, err := b.rdb.XLen(ctx, PersistStream).Result()
	if err != nil {
		return 0, fmt.Errorf("length of %s: %w", PersistStream, err)
	}
	return n, nil
}

func entries(msgs []redis.XMessage) []PersistEntry {
	out := make([]PersistEntry, 0, len(msgs))
	for _, m := range msgs {
		if f, ok := m.Values["f"].(string); ok {
			out = append(out, PersistEntry{ID: m.ID, Frame: []byte(f)})
		}
	}
	return out
}

//go:embed requeue.lua
var requeueSource string

var requeueScript = redis.NewScript(requeueSource)

// Requeue puts back on the stream those of entries it no longer has, and
// returns how many. A writer that read entries and then waited for Postgres
// is the only holder of them once Redis has lost them; on the stream again
// they are where catch-ups and retries look for messages not stored yet.
func (b *Broker) Requeue(ctx context.Context, entries []PersistEntry) (int, error) {
	args := make([]any, 0, 2*len(entries))
	for _, e := range entries {
		args = append(args, e.ID, e.Frame)
	}
	n, err := requeueScript.Run(ctx, b.rdb, []string{PersistStream}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("requeue %d entries on %s: %w", len(entries), PersistStream, err)
	}
	return n, nil
}

// backlogPage is how many persist entries one XRANGE of a scan reads.
const backlogPage = 1000

// scanBacklog hands each message still waiting for Postgres to fn, oldest
// first, until fn returns false. The backlog is every room's, so this is for
// the rare questions that Postgres cannot answer yet (a resume over messages
// not stored yet, a retry's id after a reseed), never for the hot path; it
// is bounded by BacklogCap.
func (b *Broker) scanBacklog(ctx context.Context, fn func(protocol.Message, []byte) bool) error {
	start := "-"
	for {
		msgs, err := b.rdb.XRangeN(ctx, PersistStream, start, "+", backlogPage).Result()
		if err != nil {
			return fmt.Errorf("scan %s: %w", PersistStream, err)
		}
		for _, e := range entries(msgs) {
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
	err := b.scanBacklog(ctx, func(m protocol.Message, frame []byte) bool {
		if m.Room == room && m.Seq > after && m.Seq <= upto {
			out = append(out, protocol.Delivery{Room: room, Seq: m.Seq, Frame: frame})
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
	err = b.scanBacklog(ctx, func(p protocol.Message, _ []byte) bool {
		if p.Room == room && p.User == user && p.ID == id {
			m, found = p, true
		}
		return !found
	})
	return m, found, err
}
