package broker

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Event is what a Subscription yields: a message, or the confirmation that a
// room's channel is subscribed, which comes again after every reconnect, so
// the receiver can repair what it missed while the connection was down.
type Event struct {
	Subscribed string
	Delivery   protocol.Delivery
}

// Subscription is one instance's subscription to the rooms that have
// members on this instance: on one Redis a pub/sub connection subscribed
// to their channels, on a cluster one sharded subscription per partition
// (shards.go).
type Subscription struct {
	keys   layout
	ps     *redis.PubSub // one Redis
	shards *shardSubs    // a cluster
}

// Subscribe opens the instance's subscription with no room yet.
func (b *Broker) Subscribe(ctx context.Context) *Subscription {
	if b.cluster != nil {
		return &Subscription{keys: b.keys, shards: newShardSubs(b)}
	}
	return &Subscription{keys: b.keys, ps: b.rdb.Subscribe(ctx)}
}

// Add subscribes to the rooms' channels; their confirmations arrive as Events.
func (s *Subscription) Add(ctx context.Context, rooms ...string) error {
	if s.shards != nil {
		return s.shards.add(ctx, rooms)
	}
	if err := s.ps.Subscribe(ctx, s.channels(rooms)...); err != nil {
		return fmt.Errorf("subscribe %v: %w", rooms, err)
	}
	return nil
}

// Remove unsubscribes from the rooms' channels.
func (s *Subscription) Remove(ctx context.Context, rooms ...string) error {
	if s.shards != nil {
		s.shards.remove(rooms)
		return nil
	}
	if err := s.ps.Unsubscribe(ctx, s.channels(rooms)...); err != nil {
		return fmt.Errorf("unsubscribe %v: %w", rooms, err)
	}
	return nil
}

// Close ends the subscription and Run.
func (s *Subscription) Close() error {
	if s.shards != nil {
		s.shards.close()
		return nil
	}
	return s.ps.Close()
}

// Run hands every event to handle until ctx ends or the subscription is
// closed. handle must not block: it runs on the instance's only reader.
func (s *Subscription) Run(ctx context.Context, handle func(Event)) {
	if s.shards != nil {
		s.shards.run(ctx, handle)
		return
	}
	ch := s.ps.ChannelWithSubscriptions(redis.WithChannelSize(65536), redis.WithChannelHealthCheckInterval(2*time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-ch:
			if !ok {
				return
			}
			switch m := v.(type) {
			case *redis.Subscription:
				if room, ok := roomOf(m.Channel); ok && m.Kind == "subscribe" {
					handle(Event{Subscribed: room})
				}
			case *redis.Message:
				if room, ok := roomOf(m.Channel); ok {
					if d, ok := parsePayload(room, m.Payload); ok {
						handle(Event{Delivery: d})
					}
				}
			}
		}
	}
}

// roomOf is the room of a room's channel on one Redis (layout.channel).
func roomOf(ch string) (string, bool) {
	room, ok := strings.CutPrefix(ch, "chat:{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(room, "}:pub")
}

// parsePayload reads "<accept unix ns> <seq> <frame>" as publish.lua writes
// it; room "" reads the room from the payload, as on a partition's channel
// ("<accept unix ns> <seq> <room> <frame>").
func parsePayload(room, payload string) (protocol.Delivery, bool) {
	b := []byte(payload)
	field := func() ([]byte, bool) {
		i := bytes.IndexByte(b, ' ')
		if i < 0 {
			return nil, false
		}
		f := b[:i]
		b = b[i+1:]
		return f, true
	}
	ns, ok1 := field()
	sq, ok2 := field()
	if !ok1 || !ok2 {
		return protocol.Delivery{}, false
	}
	if room == "" {
		r, ok := field()
		if !ok {
			return protocol.Delivery{}, false
		}
		room = string(r)
	}
	nanos, err1 := strconv.ParseInt(string(ns), 10, 64)
	seq, err2 := strconv.ParseInt(string(sq), 10, 64)
	if err1 != nil || err2 != nil {
		return protocol.Delivery{}, false
	}
	return protocol.Delivery{Room: room, Seq: seq, Frame: b, Accepted: time.Unix(0, nanos)}, true
}

func (s *Subscription) channels(rooms []string) []string {
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = s.keys.channel(r)
	}
	return out
}
