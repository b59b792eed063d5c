// Package hub keeps the rooms and their members on one instance. It
// subscribes to a room's channel while the room has local members, forwards
// each message to them in seq order exactly once, and has a member that
// misses messages (a resume, or a hole in what pub/sub brought) catch up from
// history before anything newer reaches it (recovery.go).
//
// The pub/sub reader only calls Subscribed and Dispatch, which never wait on
// Redis or Postgres: every round trip runs on a room's worker (subscribe,
// unsubscribe, position) or on a member's recovery (history), never while a
// room's lock is held.
package hub

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Member is one connection's end of the hub.
type Member interface {
	// Deliver queues a live frame without blocking; false means the
	// member's queue overflowed or it is closing.
	Deliver(*protocol.Delivery) bool
	// Catchup queues history frames without blocking and outside the live
	// queue's bound: the hub paces them with Drained. False: closing.
	Catchup([]*protocol.Delivery) bool
	// Drained returns once the member's writer has taken every catch-up
	// frame queued, or an error once the member closes or ctx ends.
	Drained(ctx context.Context) error
	// Close ends the member's connection with a WebSocket close code.
	Close(code int, reason string)
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
	// Range returns the oldest limit kept messages with after < seq <= upto.
	Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Delivery, error)
	// Pending returns the room's messages with after < seq <= upto that are
	// queued for the archive and not stored there yet, in seq order.
	Pending(ctx context.Context, room string, after, upto int64) ([]protocol.Delivery, error)
}

// Archive is the durable history (Postgres).
type Archive interface {
	// Range returns the oldest limit stored messages with after < seq <= upto.
	Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Message, error)
	// Floors returns the seqs f, from <= f <= to, above which the room's
	// counter restarted (between a floor and the last message below it lie
	// seqs no message had), and how long ago the newest was recorded.
	Floors(ctx context.Context, room string, from, to int64) (floors []int64, age time.Duration, err error)
	// Newest counts the stored messages with after < seq <= upto, at most
	// n, and returns the oldest seq of the newest n.
	Newest(ctx context.Context, room string, after, upto, n int64) (oldest, count int64, err error)
}

// Options tunes a Hub; zero values take the defaults.
type Options struct {
	// PendingLimit is how many live messages a member that catches up may
	// hold; past it they are dropped and read from history instead.
	PendingLimit int
	// RecoveryLimit is the most missed messages a catch-up delivers: older
	// ones are announced with history_gap (RECOVERY_LIMIT). Messages are
	// counted, not seqs: the seqs a reseed skipped cost nothing.
	RecoveryLimit int64
	PageSize      int           // messages per history read and per paced push
	JoinTimeout   time.Duration // how long a join waits for the room's subscription
	CallTimeout   time.Duration // each Redis or Postgres call
	// A failed Redis or Postgres call is retried after RetryMin, doubling up
	// to RetryMax; a catch-up gives up after RetryFor and closes its member
	// with 1011, so that the client resumes.
	RetryMin, RetryMax, RetryFor time.Duration
	// LossGrace is how long messages must be missing from every store
	// before they are announced as lost (8 s, under RetryFor): a persist
	// writer may hold them in memory, read from a Redis that lost them,
	// until Postgres takes its insert.
	LossGrace time.Duration
	// CatchupConcurrency is how many history reads run at once on the
	// instance (CATCHUP_CONCURRENCY): catch-up pages, and the history API's
	// reads, which take their slots through ReadSlot.
	CatchupConcurrency int
}

func (o *Options) defaults() {
	set := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.PendingLimit <= 0 {
		o.PendingLimit = 4096
	}
	if o.RecoveryLimit <= 0 {
		o.RecoveryLimit = 10_000
	}
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.CatchupConcurrency <= 0 {
		o.CatchupConcurrency = 8
	}
	set(&o.JoinTimeout, 3*time.Second)
	set(&o.CallTimeout, 2*time.Second)
	set(&o.RetryMin, 50*time.Millisecond)
	set(&o.RetryMax, time.Second)
	set(&o.RetryFor, 10*time.Second)
	set(&o.LossGrace, 8*time.Second)
}

// Hub is the set of rooms with members on this instance.
type Hub struct {
	bus     Bus
	recent  Recent
	archive Archive
	m       *metrics.Metrics
	log     *slog.Logger
	opts    Options

	// mu guards rooms and every room's subscription state. Never take a
	// room's mu while holding it.
	mu    sync.Mutex
	rooms map[string]*room

	reads chan struct{} // a token per history read in flight: CatchupConcurrency at most

	turnsMu sync.Mutex
	turns   map[Member]*turn // of the members catching up
}

// New builds a hub; archive may be nil (no fallback for old history).
func New(bus Bus, recent Recent, archive Archive, m *metrics.Metrics, log *slog.Logger, opts Options) *Hub {
	opts.defaults()
	return &Hub{bus: bus, recent: recent, archive: archive, m: m, log: log, opts: opts, rooms: map[string]*room{},
		reads: make(chan struct{}, opts.CatchupConcurrency), turns: map[Member]*turn{}}
}

// busState is where a room stands on the pub/sub connection.
type busState int

const (
	off      busState = iota // not subscribed
	retrying                 // Add failed; go-redis still resubscribes it after a reconnect
	on                       // Add succeeded
)

type room struct {
	name string

	// Guarded by Hub.mu. One worker at a time drives the subscription
	// towards "subscribed while refs > 0", so subscribe and unsubscribe
	// calls for a room never overlap.
	refs      int           // members plus joins in progress
	ready     chan struct{} // closed once subscribed and synced; renewed on unsubscribe
	synced    bool
	bus       busState
	confirmed bool // a subscribe confirmation waits for a sync
	stale     bool // a hole was seen: re-read the room's position (its epoch)
	working   bool // a worker runs

	mu      sync.Mutex // guards the fields below
	last    int64      // newest seq known on this instance
	epoch   string
	members map[Member]*membership
}

type membership struct {
	m    Member
	last int64 // newest seq (or gap end) handed to the member
	// *catchup is nil until the member's first catch-up: a member that never
	// misses a message holds 32 bytes, not 96.
	*catchup
}

// catchup is a member's recovery state, kept once made.
type catchup struct {
	ctx    context.Context // ends when the member leaves
	cancel context.CancelFunc
	// While catching, a recovery reads history up to target and live
	// messages after target wait in pending, in order.
	catching bool
	target   int64
	pending  []*protocol.Delivery
	behind   bool // pending overflowed: the member is slower than the room
}

// isCatching tells whether a recovery feeds the member; r.mu is held.
func (ms *membership) isCatching() bool { return ms.catchup != nil && ms.catching }

// end is the newest seq the member has or is sure to get without a new
// history read.
func (ms *membership) end() int64 {
	if !ms.isCatching() {
		return ms.last
	}
	if n := len(ms.pending); n > 0 {
		return ms.pending[n-1].Seq
	}
	return ms.target
}

// Join adds m to the room and returns the room's position at join. Without
// since m gets only newer messages; with since it first gets every message
// with seq > since: the joined frame, then the catch-up (history_gap for
// what cannot be delivered, in its place), then the live messages. A since
// above the room's latest is trusted whatever its epoch: seqs never go back
// (a room whose Redis state is lost restarts above every seq it had), so
// nothing at or below since is the member's to get again. m must not be in
// the room already.
func (h *Hub) Join(ctx context.Context, m Member, name string, since *int64) (protocol.Position, error) {
	return h.JoinIf(ctx, m, name, since, nil)
}

// JoinIf joins like Join once admit, given where the room stands, returns
// nil; its error refuses the join before anything is sent or read (the
// quotas on rooms created and on resumes from far back). admit runs with
// the room locked: it must be quick.
func (h *Hub) JoinIf(ctx context.Context, m Member, name string, since *int64, admit func(at protocol.Position) error) (protocol.Position, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return protocol.Position{}, err
	}
	r.mu.Lock()
	at := protocol.Position{Seq: r.last, Epoch: r.epoch}
	if admit != nil {
		if err := admit(at); err != nil {
			r.mu.Unlock()
			h.release(r)
			return at, err
		}
	}
	defer r.mu.Unlock()
	ms := &membership{m: m, last: at.Seq}
	r.members[m] = ms
	m.Deliver(&protocol.Delivery{Room: name, Frame: protocol.Joined(name, at)})
	switch {
	case since == nil:
	case *since < at.Seq:
		ms.last = *since
		h.catchUp(r, ms, at.Seq, metrics.OpHistory)
	default:
		// The client saw messages this instance has not forwarded yet, or
		// Redis lost the room since: its next seqs are above since.
		ms.last = *since
	}
	return at, nil
}

// Leave removes m from the room; leaving a room one is not in is a no-op.
func (h *Hub) Leave(m Member, name string) bool {
	r := h.lookup(name)
	if r == nil {
		return false
	}
	r.mu.Lock()
	ms, ok := r.members[m]
	if ok {
		h.forget(r, ms)
	}
	r.mu.Unlock()
	if ok {
		h.release(r)
	}
	return ok
}

// drop removes a member the hub gives up on and closes its connection.
func (h *Hub) drop(r *room, ms *membership, code int, reason string) {
	r.mu.Lock()
	current := r.members[ms.m] == ms
	if current {
		h.forget(r, ms)
	}
	r.mu.Unlock()
	if current {
		h.release(r)
		ms.m.Close(code, reason)
	}
}

// forget removes ms and stops its recovery; r.mu is held.
func (h *Hub) forget(r *room, ms *membership) {
	delete(r.members, ms.m)
	if ms.catchup != nil {
		ms.cancel()
	}
}

// acquire returns the room once it is subscribed and synced.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	r, ok := h.rooms[name]
	if !ok {
		r = &room{name: name, ready: make(chan struct{}), members: map[Member]*membership{}}
		h.rooms[name] = r
		h.m.RoomsActive.Set(float64(len(h.rooms)))
	}
	r.refs++
	if r.refs == 1 {
		h.wake(r)
	}
	ready := r.ready
	h.mu.Unlock()
	wait, cancel := context.WithTimeout(ctx, h.opts.JoinTimeout)
	defer cancel()
	select {
	case <-ready:
		return r, nil
	case <-wait.Done():
		h.release(r)
		return nil, fmt.Errorf("join %s: waiting for the room's subscription: %w", name, wait.Err())
	}
}

func (h *Hub) release(r *room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.refs--
	if r.refs == 0 {
		h.wake(r)
	}
}

func (h *Hub) lookup(name string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[name]
}

// wake starts the room's worker unless it runs; h.mu is held.
func (h *Hub) wake(r *room) {
	if !r.working {
		r.working = true
		go h.work(r)
	}
}

// work drives the room's subscription until nothing is left to do: it
// subscribes while the room is wanted, unsubscribes once it is not, one call
// at a time, and re-reads the room's position after every subscribe
// confirmation. Whatever order joins and leaves come in, the last call
// matches the membership: go-redis forgets an unsubscribed channel for its
// resubscription, so a late unsubscribe would otherwise silence the room.
func (h *Hub) work(r *room) {
	wait := h.opts.RetryMin
	for {
		step := h.next(r)
		if step == nil {
			return
		}
		if err := step(); err != nil {
			time.Sleep(wait)
			wait = min(2*wait, h.opts.RetryMax)
			continue
		}
		wait = h.opts.RetryMin
	}
}

// next picks the worker's next call, or nil when the worker is done.
func (h *Hub) next(r *room) func() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := r.refs > 0
	switch {
	case want && r.bus != on:
		return func() error { return h.subscribe(r) }
	case !want && r.bus != off:
		if r.synced {
			r.synced, r.ready = false, make(chan struct{})
		}
		return func() error { return h.unsubscribe(r) }
	case want && (r.confirmed || r.stale):
		r.confirmed, r.stale = false, false
		return func() error { return h.sync(r) }
	case !want && h.rooms[r.name] == r:
		delete(h.rooms, r.name)
		h.m.RoomsActive.Set(float64(len(h.rooms)))
	}
	r.working = false
	return nil
}

func (h *Hub) subscribe(r *room) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.CallTimeout)
	defer cancel()
	err := h.bus.Add(ctx, r.name)
	h.mu.Lock()
	r.bus = on
	if err != nil {
		r.bus = retrying
	}
	h.mu.Unlock()
	if err != nil {
		h.m.RedisErrors.WithLabelValues(metrics.OpSubscribe).Inc()
		h.log.Warn("subscribe failed; retrying", "room", r.name, "err", err)
	}
	return err
}

func (h *Hub) unsubscribe(r *room) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.CallTimeout)
	defer cancel()
	if err := h.bus.Remove(ctx, r.name); err != nil {
		// The channel is forgotten all the same: a reconnect does not
		// resubscribe it, and stray messages for it are ignored.
		h.m.RedisErrors.WithLabelValues(metrics.OpUnsubscribe).Inc()
		h.log.Warn("unsubscribe failed", "room", r.name, "err", err)
	}
	h.mu.Lock()
	r.bus = off
	h.mu.Unlock()
	return nil
}

// sync reads the room's position after a subscribe confirmation (the first,
// or one after a pub/sub reconnect) or a hole: every member behind it
// catches up from history, and a new room becomes ready.
func (h *Hub) sync(r *room) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.CallTimeout)
	defer cancel()
	at, err := h.recent.Latest(ctx, r.name)
	if err != nil {
		h.m.RedisErrors.WithLabelValues(metrics.OpLatest).Inc()
		h.log.Warn("reading the room's position failed; retrying", "room", r.name, "err", err)
		h.mu.Lock()
		r.confirmed = true
		h.mu.Unlock()
		return err
	}
	r.mu.Lock()
	if at.Epoch != "" {
		r.epoch = at.Epoch
	}
	if at.Seq > r.last {
		r.last = at.Seq
		for _, ms := range r.members {
			if ms.end() < at.Seq {
				h.catchUp(r, ms, at.Seq, metrics.OpRepair)
			}
		}
	}
	r.mu.Unlock()
	h.mu.Lock()
	if !r.synced {
		r.synced = true
		close(r.ready)
	}
	h.mu.Unlock()
	return nil
}

// Subscribed handles the confirmation of a room's subscription. It runs on
// the pub/sub reader: the worker does the rest.
func (h *Hub) Subscribed(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.rooms[name]; r != nil {
		r.confirmed = true
		h.wake(r)
	}
}

// Dispatch forwards one published message to the room's local members. It
// runs on the pub/sub reader and never waits: a member that d does not
// follow contiguously catches up on its own first.
func (h *Hub) Dispatch(d *protocol.Delivery) {
	r := h.lookup(d.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	if d.Seq <= r.last {
		// Every member has it or has it coming from history.
		r.mu.Unlock()
		return
	}
	hole := d.Seq > r.last+1
	r.last = d.Seq
	h.forward(r, d)
	r.mu.Unlock()
	if !d.Accepted.IsZero() {
		h.m.BroadcastLatency.Observe(time.Since(d.Accepted).Seconds())
	}
	if hole {
		// Pub/sub lost messages, or Redis lost the room and reseeded it:
		// re-read its position for the epoch.
		h.mu.Lock()
		r.stale = true
		h.wake(r)
		h.mu.Unlock()
	}
}

// forward hands d to every member in seq order; r.mu is held.
func (h *Hub) forward(r *room, d *protocol.Delivery) {
	for m, ms := range r.members {
		end := ms.end()
		switch {
		case d.Seq <= end:
		case d.Seq > end+1:
			h.catchUp(r, ms, d.Seq-1, metrics.OpRepair)
			ms.pending = append(ms.pending, d)
		case ms.isCatching():
			ms.pending = append(ms.pending, d)
			if len(ms.pending) > h.opts.PendingLimit {
				// Re-point the member at the log rather than hold more.
				ms.target, ms.pending, ms.behind = d.Seq, nil, true
			}
		default:
			ms.last = d.Seq
			m.Deliver(d)
		}
	}
}
