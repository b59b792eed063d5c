package broker

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
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

// Subscription is one instance's pub/sub connection, subscribed to the
// channels of the rooms that have members on this instance.
type Subscription struct {
	ps *redis.PubSub
}

// Subscribe opens the instance's pub/sub connection with no channel yet.
func (b *Broker) Subscribe(ctx context.Context) *Subscription {
	return &Subscription{ps: b.rdb.Subscribe(ctx)}
}

// Add subscribes to the rooms' channels; their confirmations arrive as Events.
func (s *Subscription) Add(ctx context.Context, rooms ...string) error {
	if err := s.ps.Subscribe(ctx, channels(rooms)...); err != nil {
		return fmt.Errorf("subscribe %v: %w", rooms, err)
	}
	return nil
}

// Remove unsubscribes from the rooms' channels.
func (s *Subscription) Remove(ctx context.Context, rooms ...string) error {
	if err := s.ps.Unsubscribe(ctx, channels(rooms)...); err != nil {
		return fmt.Errorf("unsubscribe %v: %w", rooms, err)
	}
	return nil
}

// Close ends the subscription and Run.
func (s *Subscription) Close() error { return s.ps.Close() }

// Run hands every event to handle until ctx ends or the subscription is
// closed. handle must not block: it runs on the instance's only reader.
func (s *Subscription) Run(ctx context.Context, handle func(Event)) {
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
				if d, ok := parsePayload(m.Channel, m.Payload); ok {
					handle(Event{Delivery: d})
				}
			}
		}
	}
}

// parsePayload reads "<accept unix ns> <seq> <frame>" as publish.lua writes it.
func parsePayload(ch, payload string) (protocol.Delivery, bool) {
	room, ok := roomOf(ch)
	if !ok {
		return protocol.Delivery{}, false
	}
	b := []byte(payload)
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return protocol.Delivery{}, false
	}
	j := bytes.IndexByte(b[i+1:], ' ')
	if j < 0 {
		return protocol.Delivery{}, false
	}
	nanos, err1 := strconv.ParseInt(string(b[:i]), 10, 64)
	seq, err2 := strconv.ParseInt(string(b[i+1:i+1+j]), 10, 64)
	if err1 != nil || err2 != nil {
		return protocol.Delivery{}, false
	}
	return protocol.Delivery{Room: room, Seq: seq, Frame: b[i+j+2:], Accepted: time.Unix(0, nanos)}, true
}

func channels(rooms []string) []string {
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = channel(r)
	}
	return out
}
