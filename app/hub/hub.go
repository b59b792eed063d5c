// Package hub keeps the rooms and their members on one instance. It
// subscribes to a room's channel while the room has local members, forwards
// each message to them in seq order exactly once, and serves join and resume
// by merging history with live messages.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Member is one connection's end of the hub.
type Member interface {
	// Deliver queues a frame without blocking; false means the member's
	// queue overflowed and it is being closed.
	Deliver(*protocol.Delivery) bool
}

// Bus subscribes the instance to rooms' channels; confirmations and messages
// come back through Hub.Subscribed and Hub.Dispatch.
type Bus interface {
	Add(ctx context.Context, rooms ...string) error
	Remove(ctx context.Context, rooms ...string) error
}

// Recent is the short per-room history (Redis).
type Recent interface {
	Latest(ctx context.Context, room string) (protocol.Position, error)
	Range(ctx context.Context, room string, after, upto int64) ([]protocol.Delivery, error)
}

// Archive is the durable history (Postgres).
type Archive interface {
	Range(ctx context.Context, room string, after, upto int64) ([]protocol.Message, error)
}

// ErrSlowConsumer: the member fell too far behind while it was catching up.
var ErrSlowConsumer = errors.New("slow consumer: too many messages queued while catching up")

// Options tunes a Hub.
type Options struct {
	PendingLimit int           // live messages a member may buffer while it catches up
	JoinTimeout  time.Duration // how long a join waits for the room's subscription
}

// Hub is the set of rooms with members on this instance.
type Hub struct {
	bus     Bus
	recent  Recent
	archive Archive
	m       *metrics.Metrics
	log     *slog.Logger
	opts    Options

	mu    sync.Mutex
	rooms map[string]*room
}

// New builds a hub; archive may be nil (no fallback for old history).
func New(bus Bus, recent Recent, archive Archive, m *metrics.Metrics, log *slog.Logger, opts Options) *Hub {
	if opts.PendingLimit <= 0 {
		opts.PendingLimit = 4096
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 3 * time.Second
	}
	return &Hub{bus: bus, recent: recent, archive: archive, m: m, log: log, opts: opts, rooms: map[string]*room{}}
}

type room struct {
	name  string
	refs  int           // members plus joins in progress; guarded by Hub.mu
	ready chan struct{} // closed once subscribed and last is known, or on failure
	err   error         // why the room could not be set up; read after ready

	mu         sync.Mutex
	subscribed bool
	last       int64 // newest seq forwarded on this instance
	members    map[Member]*membership
}

type membership struct {
	last     int64 // newest seq delivered to the member
	catching bool  // history is being read: live messages wait in pending
	pending  []*protocol.Delivery
	overflow bool
}

// Join adds m to the room. Without since it gets only new messages; with
// since it first gets every message with seq > since that history holds. The
// joined frame, a history_gap error if history cannot fill the gap, the
// history and then the live messages reach m in that order. It returns the
// room's latest seq at join.
func (h *Hub) Join(ctx context.Context, m Member, name string, since *int64) (int64, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	latest := r.last
	start := latest
	if since != nil && *since < latest {
		start = *since
	}
	ms := &membership{last: start, catching: start < latest}
	r.members[m] = ms
	m.Deliver(&protocol.Delivery{Room: name, Frame: protocol.Joined(name, latest)})
	r.mu.Unlock()
	if !ms.catching {
		return latest, nil
	}

	history := h.history(ctx, name, start, latest, m)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, batch := range [][]*protocol.Delivery{history, ms.pending} {
		for _, d := range batch {
			if d.Seq > ms.last {
				ms.last = d.Seq
				ms.overflow = ms.overflow || !m.Deliver(d)
			}
		}
	}
	ms.catching, ms.pending = false, nil
	if ms.overflow {
		delete(r.members, m)
		h.release(r)
		return latest, ErrSlowConsumer
	}
	return latest, nil
}

// history reads (after, upto] from Redis, falls back to Postgres for what
// Redis no longer keeps, and tells m about any part neither can supply.
func (h *Hub) history(ctx context.Context, room string, after, upto int64, m Member) []*protocol.Delivery {
	recent, err := h.recent.Range(ctx, room, after, upto)
	if err != nil {
		h.m.RedisErrors.WithLabelValues(metrics.OpHistory).Inc()
		h.log.Warn("resume from redis failed", "room", room, "err", err)
	}
	oldest := upto + 1
	if len(recent) > 0 {
		oldest = recent[0].Seq
	}
	var all []*protocol.Delivery
	if oldest > after+1 && h.archive != nil {
		msgs, err := h.archive.Range(ctx, room, after, oldest-1)
		if err != nil {
			h.m.PostgresErrors.WithLabelValues(metrics.OpHistory).Inc()
			h.log.Warn("resume from postgres failed", "room", room, "err", err)
		}
		for _, msg := range msgs {
			all = append(all, &protocol.Delivery{Room: room, Seq: msg.Seq, Frame: msg.Frame()})
		}
	}
	for i := range recent {
		all = append(all, &recent[i])
	}
	// Keep the contiguous tail: a client dedupes by seq, so what follows a
	// hole must not be mistaken for a complete resume.
	have := upto
	for i := len(all) - 1; i >= 0 && all[i].Seq == have; i-- {
		have--
	}
	if have > after {
		h.m.HistoryGaps.Inc()
		m.Deliver(&protocol.Delivery{Room: room, Frame: protocol.ErrorFrame(protocol.Errorf(protocol.CodeHistoryGap,
			"messages %d to %d of room %s are no longer kept; resuming after them", after+1, have, room))})
		all = all[len(all)-int(upto-have):]
	}
	return all
}

// Leave removes m from the room; leaving a room one is not in is a no-op.
func (h *Hub) Leave(m Member, name string) bool {
	h.mu.Lock()
	r := h.rooms[name]
	h.mu.Unlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	_, ok := r.members[m]
	delete(r.members, m)
	r.mu.Unlock()
	if ok {
		h.release(r)
	}
	return ok
}

// acquire returns the ready room, subscribing to it if it is new here.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	r, ok := h.rooms[name]
	if !ok {
		r = &room{name: name, ready: make(chan struct{}), members: map[Member]*membership{}}
		h.rooms[name] = r
		h.m.RoomsActive.Set(float64(len(h.rooms)))
	}
	r.refs++
	h.mu.Unlock()
	if !ok {
		if err := h.bus.Add(ctx, name); err != nil {
			h.m.RedisErrors.WithLabelValues(metrics.OpSubscribe).Inc()
			h.fail(r, err)
		}
	}
	wait, cancel := context.WithTimeout(ctx, h.opts.JoinTimeout)
	defer cancel()
	select {
	case <-r.ready:
		if r.err == nil {
			return r, nil
		}
		err := r.err
		h.release(r)
		return nil, fmt.Errorf("join %s: %w", name, err)
	case <-wait.Done():
		h.release(r)
		return nil, fmt.Errorf("join %s: waiting for the room's subscription: %w", name, wait.Err())
	}
}

// fail marks a room that could not be set up; it is forgotten so the next join
// tries afresh.
func (h *Hub) fail(r *room, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subscribed || r.err != nil {
		return
	}
	r.err = err
	close(r.ready)
	h.mu.Lock()
	if h.rooms[r.name] == r {
		delete(h.rooms, r.name)
		h.m.RoomsActive.Set(float64(len(h.rooms)))
	}
	h.mu.Unlock()
}

func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	drop := r.refs == 0 && h.rooms[r.name] == r
	if drop {
		delete(h.rooms, r.name)
		h.m.RoomsActive.Set(float64(len(h.rooms)))
	}
	h.mu.Unlock()
	if drop && r.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := h.bus.Remove(ctx, r.name); err != nil {
			h.m.RedisErrors.WithLabelValues(metrics.OpUnsubscribe).Inc()
		}
	}
}

func (h *Hub) lookup(name string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[name]
}

// Subscribed handles the confirmation of a room's subscription: the first one
// makes the room ready at Redis's latest seq; a later one follows a pub/sub
// reconnect, so it forwards whatever was published in between.
func (h *Hub) Subscribed(ctx context.Context, name string) {
	r := h.lookup(name)
	if r == nil {
		return
	}
	pos, err := h.recent.Latest(ctx, name)
	latest := pos.Seq
	if err != nil {
		h.m.RedisErrors.WithLabelValues(metrics.OpLatest).Inc()
		h.fail(r, err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	if !r.subscribed {
		r.subscribed, r.last = true, latest
		close(r.ready)
		return
	}
	h.repair(ctx, r, latest+1)
}

// Dispatch forwards one published message to the room's local members.
func (h *Hub) Dispatch(ctx context.Context, d *protocol.Delivery) {
	r := h.lookup(d.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.subscribed || d.Seq <= r.last {
		return
	}
	h.repair(ctx, r, d.Seq)
	h.forward(r, d)
	if !d.Accepted.IsZero() {
		h.m.BroadcastLatency.Observe(time.Since(d.Accepted).Seconds())
	}
}

// repair forwards the messages between the room's last and next that pub/sub
// did not bring (lost while its connection was down). r.mu is held.
func (h *Hub) repair(ctx context.Context, r *room, next int64) {
	if next <= r.last+1 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	missed, err := h.recent.Range(ctx, r.name, r.last, next-1)
	if err != nil {
		h.m.RedisErrors.WithLabelValues(metrics.OpRepair).Inc()
		h.log.Warn("repair after a pub/sub gap failed", "room", r.name, "after", r.last, "err", err)
		return
	}
	for i := range missed {
		h.forward(r, &missed[i])
	}
}

// forward hands d to every member in seq order. r.mu is held.
func (h *Hub) forward(r *room, d *protocol.Delivery) {
	r.last = d.Seq
	for m, ms := range r.members {
		switch {
		case ms.catching:
			ms.pending = append(ms.pending, d)
			ms.overflow = ms.overflow || len(ms.pending) > h.opts.PendingLimit
		case d.Seq > ms.last:
			ms.last = d.Seq
			m.Deliver(d)
		}
	}
}
