package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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
// reading them must not lose them.
func (b *Broker) ClaimPersist(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]PersistEntry, error) {
	msgs, _, err := b.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: PersistStream, Group: persistGroup, Consumer: consumer, MinIdle: minIdle, Start: "0-0", Count: int64(count),
	}).Result()
	if err != nil && !strings.HasPrefix(err.Error(), "NOGROUP") {
		return nil, fmt.Errorf("claim idle entries of %s: %w", PersistStream, err)
	}
	return entries(msgs), nil
}

// AckPersist marks entries as written to Postgres.
func (b *Broker) AckPersist(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := b.rdb.XAck(ctx, PersistStream, persistGroup, ids...).Err(); err != nil {
		return fmt.Errorf("ack %d entries of %s: %w", len(ids), PersistStream, err)
	}
	return nil
}

// PersistBacklog is how many queued messages are not yet written: never read
// by the group plus read and not acked.
func (b *Broker) PersistBacklog(ctx context.Context) (int64, error) {
	groups, err := b.rdb.XInfoGroups(ctx, PersistStream).Result()
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", PersistStream, err)
	}
	for _, g := range groups {
		if g.Name == persistGroup {
			return g.Lag + g.Pending, nil
		}
	}
	return 0, nil
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
