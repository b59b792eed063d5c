package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// shardSubs is an instance's subscription on a cluster: a sharded one
// (SSUBSCRIBE) per partition with members here, each on a connection to
// the primary that owns the partition's slot, since a shard channel is
// served by its shard only. A partition's subscription ends when its slot
// moves or its primary is demoted (the server sends sunsubscribe), when
// the connection fails or stays silent, or when the subscribe is refused
// (MOVED while the client's map of the cluster is stale): it is then opened
// again, to the slot's owner as the client then knows it, and its
// confirmation is handed on as a confirmation of each of the partition's
// rooms, which makes the hub repair them from the log, as after a
// reconnect to one Redis.
type shardSubs struct {
	b      *Broker
	events chan Event
	done   chan struct{}

	mu     sync.Mutex
	parts  map[int]*partSub
	closed bool
}

// partSub is one partition's subscription; guarded by shardSubs.mu.
type partSub struct {
	rooms     map[string]bool
	confirmed bool // the channel is subscribed now
	stop      context.CancelFunc
}

// A partition's subscription is checked with a ping after 2 s without
// traffic (as one Redis's pub/sub connection is), and given up after 6 s.
const (
	shardQuiet  = 2 * time.Second
	shardSilent = 6 * time.Second
)

func newShardSubs(b *Broker) *shardSubs {
	return &shardSubs{b: b, events: make(chan Event, 65536), done: make(chan struct{}), parts: map[int]*partSub{}}
}

// emit queues an event for run, unless the subscription is closed.
func (s *shardSubs) emit(e Event) {
	select {
	case s.events <- e:
	case <-s.done:
	}
}

// add subscribes the rooms' partitions; a room whose partition is
// subscribed already is confirmed at once, since its messages come from
// now on.
func (s *shardSubs) add(_ context.Context, rooms []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("subscription closed")
	}
	for _, room := range rooms {
		p := s.b.keys.part(room)
		ps := s.parts[p]
		if ps == nil {
			ctx, cancel := context.WithCancel(context.Background())
			ps = &partSub{rooms: map[string]bool{}, stop: cancel}
			s.parts[p] = ps
			go s.follow(ctx, p, ps)
		}
		ps.rooms[room] = true
		if ps.confirmed {
			s.emit(Event{Subscribed: room})
		}
	}
	return nil
}

// remove forgets the rooms, and a partition left with none.
func (s *shardSubs) remove(rooms []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, room := range rooms {
		p := s.b.keys.part(room)
		if ps := s.parts[p]; ps != nil {
			delete(ps.rooms, room)
			if len(ps.rooms) == 0 {
				ps.stop()
				delete(s.parts, p)
			}
		}
	}
}

func (s *shardSubs) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, ps := range s.parts {
		ps.stop()
	}
	close(s.done)
}

func (s *shardSubs) run(ctx context.Context, handle func(Event)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case e := <-s.events:
			handle(e)
		}
	}
}

// follow keeps partition p subscribed until ctx ends.
func (s *shardSubs) follow(ctx context.Context, p int, me *partSub) {
	const waitMin, waitMax = 50 * time.Millisecond, 2 * time.Second
	wait := waitMin
	for ctx.Err() == nil {
		ps := s.b.cluster.SSubscribe(ctx, s.b.keys.partChannel(p))
		confirmed := s.listen(ctx, p, me, ps)
		_ = ps.Close()
		s.mu.Lock()
		me.confirmed = false
		s.mu.Unlock()
		if confirmed {
			wait = waitMin
		}
		s.b.cluster.ReloadState(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, waitMax)
	}
}

// listen hands on what partition p's subscription receives until it ends,
// and tells whether it was confirmed.
func (s *shardSubs) listen(ctx context.Context, p int, me *partSub, ps *redis.PubSub) (confirmed bool) {
	heard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, shardQuiet)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() && time.Since(heard) < shardSilent && ps.Ping(ctx) == nil {
				continue
			}
			return confirmed // refused (MOVED), lost, silent, or stopped
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "ssubscribe" {
				return confirmed // sunsubscribe from the server: the slot is not its own now
			}
			confirmed = true
			s.mu.Lock()
			if s.parts[p] == me {
				me.confirmed = true
				for room := range me.rooms {
					s.emit(Event{Subscribed: room})
				}
			}
			s.mu.Unlock()
		case *redis.Message:
			if d, ok := parsePayload("", m.Payload); ok {
				s.emit(Event{Delivery: d})
			}
		}
	}
}
