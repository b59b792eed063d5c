// Package broker is Switchboard's Redis layer: it allocates each room's seq,
// keeps a short per-room history, fans messages out to every instance through
// pub/sub and queues them for Postgres on a stream read by a consumer group.
package broker

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

//go:embed publish.lua
var publishSource string

var publishScript = redis.NewScript(publishSource)

// PersistStream is the stream every accepted message is queued on for Postgres.
const PersistStream = "chat:persist"

// Options tunes the broker; zero values take the defaults.
type Options struct {
	HistorySize int           // messages kept per room for resume
	DedupeTTL   time.Duration // how long a sender's message id is remembered
	PersistCap  int64         // approximate cap of the persist stream
}

// Broker talks to one Redis (or a primary with replicas behind one endpoint).
type Broker struct {
	rdb  *redis.Client
	opts Options
}

// Connect parses a redis:// or rediss:// URL with timeouts short enough that a
// Redis outage turns into errors, not hung connections.
func Connect(url string, opts Options) (*Broker, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	o.DialTimeout = 2 * time.Second
	o.ReadTimeout = 2 * time.Second
	o.WriteTimeout = 2 * time.Second
	o.MaxRetries = 1
	return New(redis.NewClient(o), opts), nil
}

// New wraps an existing client.
func New(rdb *redis.Client, opts Options) *Broker {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 1000
	}
	if opts.DedupeTTL <= 0 {
		opts.DedupeTTL = 24 * time.Hour
	}
	if opts.PersistCap <= 0 {
		opts.PersistCap = 1_000_000
	}
	return &Broker{rdb: rdb, opts: opts}
}

// Close releases the connections.
func (b *Broker) Close() error { return b.rdb.Close() }

// Ping checks that Redis answers.
func (b *Broker) Ping(ctx context.Context) error { return b.rdb.Ping(ctx).Err() }

// Room keys share a hash tag so a clustered Redis keeps a room on one shard.
func seqKey(room string) string   { return "chat:{" + room + "}:seq" }
func epochKey(room string) string { return "chat:{" + room + "}:epoch" }
func logKey(room string) string   { return "chat:{" + room + "}:log" }
func channel(room string) string  { return "chat:{" + room + "}:pub" }
func dedupeKey(room, user, id string) string {
	return "chat:{" + room + "}:id:" + strconv.Itoa(len(user)) + ":" + user + ":" + id
}

// roomOf is channel's inverse.
func roomOf(ch string) (string, bool) {
	room, ok := strings.CutPrefix(ch, "chat:{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(room, "}:pub")
}

// Accepted is the outcome of Publish.
type Accepted struct {
	Seq       int64
	Duplicate bool // the id was seen before: this is the original seq, nothing stored
}

// Publish accepts a message: once it returns without error the message has
// its seq, is in the room's history, queued for Postgres and published.
func (b *Broker) Publish(ctx context.Context, room, user, text, id string, now time.Time) (Accepted, error) {
	pre, post := protocol.MessageFrameParts(room, user, text, id, now)
	hasID := "0"
	if id != "" {
		hasID = "1"
	}
	res, err := publishScript.Run(ctx, b.rdb,
		[]string{seqKey(room), logKey(room), dedupeKey(room, user, id), PersistStream},
		channel(room), pre, post, b.opts.HistorySize, int(b.opts.DedupeTTL.Seconds()),
		b.opts.PersistCap, now.UnixNano(), hasID,
	).Int64Slice()
	if err != nil {
		return Accepted{}, fmt.Errorf("publish to %s: %w", room, err)
	}
	return Accepted{Seq: res[0], Duplicate: res[1] == 1}, nil
}

// Latest returns the room's newest seq and its epoch: zero for a room never
// written to or whose state Redis lost, no epoch if only that was lost (the
// next send reseeds the room).
func (b *Broker) Latest(ctx context.Context, room string) (protocol.Position, error) {
	v, err := b.rdb.MGet(ctx, seqKey(room), epochKey(room)).Result()
	if err != nil {
		return protocol.Position{}, fmt.Errorf("latest seq of %s: %w", room, err)
	}
	seq, _ := v[0].(string)
	epoch, _ := v[1].(string)
	if seq == "" {
		return protocol.Position{}, nil
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return protocol.Position{}, fmt.Errorf("latest seq of %s: %q is not a number", room, seq)
	}
	return protocol.Position{Seq: n, Epoch: epoch}, nil
}

// Range returns the oldest limit of the room's kept messages with after <
// seq <= upto, oldest first. The log is bounded, so the result may start
// above after+1.
func (b *Broker) Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Delivery, error) {
	if upto <= after {
		return nil, nil
	}
	msgs, err := b.rdb.XRangeN(ctx, logKey(room), strconv.FormatInt(after+1, 10)+"-0", strconv.FormatInt(upto, 10)+"-0", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("history of %s after %d: %w", room, after, err)
	}
	out := make([]protocol.Delivery, 0, len(msgs))
	for _, m := range msgs {
		seq, _, _ := strings.Cut(m.ID, "-")
		n, err := strconv.ParseInt(seq, 10, 64)
		frame, ok := m.Values["f"].(string)
		if err != nil || !ok {
			return nil, fmt.Errorf("history of %s: malformed entry %s", room, m.ID)
		}
		out = append(out, protocol.Delivery{Room: room, Seq: n, Frame: []byte(frame)})
	}
	return out, nil
}
