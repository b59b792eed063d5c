package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Recovery, after centrifugal/centrifuge's: a member's position in a room is
// the newest seq it was handed, and seqs are never reused (the room's epoch
// changes when Redis loses it and its counter is reseeded above everything
// that may have been acked), so "everything after since" always means the
// same messages. A member that misses some (a resume, or a hole in what
// pub/sub brought this instance) reads them from history a page at a time:
// Redis first, Postgres for what Redis no longer keeps. Each page goes to
// the member once its writer has taken the previous one, so a catch-up
// moves at the client's pace and never counts against the live queue's
// bound. Live messages wait in the member's pending list meanwhile; past
// PendingLimit they are dropped and read from history too.
//
// A gap means gone. What no store holds and never will is announced with a
// history_gap naming the range, in its place in the stream, and so is the
// oldest part of a catch-up longer than RecoveryLimit messages. Nothing else
// is: a message still queued for Postgres is read from that queue; the seqs
// a reseed skipped (between a room's last message and the floor its counter
// restarted at) are passed over in silence, because no message had them. A
// Redis or Postgres error is retried, never taken for a gap; when retries
// run out the member is closed with 1011 and resumes from the last seq it
// got.

// catchUp has ms read history up to `to` before anything newer reaches it,
// starting its recovery unless one runs; r.mu is held.
func (h *Hub) catchUp(r *room, ms *membership, to int64, op string) {
	if ms.catchup == nil {
		ctx, cancel := context.WithCancel(context.Background())
		ms.catchup = &catchup{ctx: ctx, cancel: cancel}
	}
	ms.target, ms.pending = to, nil
	if ms.catching {
		return
	}
	ms.catching = true
	go h.recover(r, ms, op)
}

// recover feeds ms from history until it is level with the room, then
// hands it the live messages that waited and turns it live. op labels the
// errors: history for a resume, repair for a hole. Each page is read and
// queued in the member's turn (a member catching up in many rooms has one
// page of them in flight at a time), and read in one of the instance's
// CatchupConcurrency read slots.
func (h *Hub) recover(r *room, ms *membership, op string) {
	t := h.takeTurns(ms.m)
	defer h.dropTurns(ms.m, t)
	rc := recovery{limited: -1}
	for {
		if !t.take(ms.ctx) {
			return // the member left the room
		}
		more := h.recoverPage(r, ms, op, &rc)
		t.give()
		if !more {
			return
		}
	}
}

// recovery is what a member's recovery in a room carries from page to page.
type recovery struct {
	gapFrom  int64 // a history_gap from here to ms.last is not announced yet
	limited  int64 // the target last measured against RecoveryLimit (-1: none)
	lossSeen loss  // the lost range last found, not announced yet
}

// recoverPage takes the recovery one step, in the member's turn: once the
// member's writer has taken the page before (of any room), it reads the
// next page and queues it. False: the recovery is over.
func (h *Hub) recoverPage(r *room, ms *membership, op string, rc *recovery) bool {
	if ms.m.Drained(ms.ctx) != nil {
		return false // the member left or is closing
	}
	r.mu.Lock()
	if r.members[ms.m] != ms {
		r.mu.Unlock()
		return false
	}
	after, upto := ms.last, ms.target
	var batch []*protocol.Delivery
	switch {
	case upto-after > h.opts.RecoveryLimit && rc.limited != upto:
		// Far behind in seqs; count the messages, outside the lock.
		r.mu.Unlock()
		var start int64
		err := h.retry(ms.ctx, r.name, after, func(ctx context.Context) error {
			return h.reading(ctx, func() (err error) {
				start, err = h.limitStart(ctx, r.name, after, upto, op)
				return err
			})
		})
		if err != nil {
			h.giveUp(r, ms, after, err)
			return false
		}
		rc.limited = upto
		r.mu.Lock()
		switch {
		case r.members[ms.m] != ms || ms.last != after || ms.target != upto || start == after:
		case ms.behind:
			r.mu.Unlock()
			h.drop(r, ms, protocol.CloseTryAgainLate, "slow consumer: fell behind the room by more than the recovery limit")
			return false
		default:
			if rc.gapFrom == 0 {
				rc.gapFrom = after + 1
			}
			ms.last = start
		}
		r.mu.Unlock()
		return true
	case after >= upto && len(ms.pending) == 0:
		ms.catching, ms.behind = false, false
		r.mu.Unlock()
		return false
	case after >= upto:
		// Level with history: the live messages that waited go next,
		// paced like history.
		n := min(len(ms.pending), h.opts.PageSize)
		batch = ms.pending[:n:n]
		ms.pending = ms.pending[n:]
		ms.target = batch[n-1].Seq
	}
	r.mu.Unlock()

	if batch == nil {
		err := h.retry(ms.ctx, r.name, after, func(ctx context.Context) error {
			return h.reading(ctx, func() (err error) {
				batch, err = h.page(ctx, r.name, after, upto, op)
				return confirm(batch, err, after, &rc.lossSeen, h.opts.LossGrace)
			})
		})
		if err != nil {
			h.giveUp(r, ms, after, err)
			return false
		}
		if len(batch) == 0 {
			// Only skipped seqs up to upto: nothing to hand over.
			r.mu.Lock()
			if r.members[ms.m] == ms && ms.last == after {
				ms.last = upto
			}
			r.mu.Unlock()
			return true
		}
	}
	batch = announce(r.name, rc.gapFrom, batch)
	rc.gapFrom = 0
	r.mu.Lock()
	if r.members[ms.m] != ms {
		r.mu.Unlock()
		return false
	}
	ms.last = batch[len(batch)-1].Seq
	ms.m.Catchup(batch)
	r.mu.Unlock()
	for _, d := range batch {
		if !d.IsMessage() {
			h.m.HistoryGaps.Inc()
		}
	}
	return true
}

// turn is a member's right to have a catch-up page in flight. Its
// recoveries, one per room, take turns: each holds it from before its page
// is read until the page is queued, and reads only once the member's writer
// has taken the page before (Drained). So a client that resumes 100 rooms
// at once costs one page in memory at a time, not 100.
type turn struct {
	token chan struct{} // holds one while a recovery has the turn
	users int           // recoveries of the member running; guarded by Hub.turnsMu
}

// take waits for the turn; false once ctx ends first.
func (t *turn) take(ctx context.Context) bool {
	select {
	case t.token <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *turn) give() { <-t.token }

// takeTurns returns m's turn, shared by its recoveries; dropTurns once each
// one ends.
func (h *Hub) takeTurns(m Member) *turn {
	h.turnsMu.Lock()
	defer h.turnsMu.Unlock()
	t := h.turns[m]
	if t == nil {
		t = &turn{token: make(chan struct{}, 1)}
		h.turns[m] = t
	}
	t.users++
	return t
}

func (h *Hub) dropTurns(m Member, t *turn) {
	h.turnsMu.Lock()
	defer h.turnsMu.Unlock()
	if t.users--; t.users == 0 {
		delete(h.turns, m)
	}
}

// reading runs read, one history read (a page, or a count), in one of the
// instance's CatchupConcurrency read slots, waiting for one until ctx ends.
func (h *Hub) reading(ctx context.Context, read func() error) error {
	release, err := h.ReadSlot(ctx)
	if err != nil {
		return err
	}
	defer release()
	return read()
}

// ReadSlot waits for one of the instance's CatchupConcurrency history read
// slots, which catch-up pages and the history API share, and returns its
// release; ctx's error if it ends first.
func (h *Hub) ReadSlot(ctx context.Context) (release func(), err error) {
	select {
	case h.reads <- struct{}{}:
		return func() { <-h.reads }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// errUnconfirmed: a page would announce messages as lost that a persist
// writer may still hold in memory (read from a Redis that lost them since,
// its insert waiting for Postgres); the page is read again.
var errUnconfirmed = errors.New("a lost range is not confirmed yet")

// loss is where and since when a catch-up has found messages no store
// holds.
type loss struct {
	after int64
	since time.Time
}

// confirm lets a page that announces lost messages through only once the
// same loss has been seen for grace: a writer inserts what it holds within
// its backoff (5 s at most) and one insert once Postgres answers, so a row
// that appears within grace was never lost.
func confirm(batch []*protocol.Delivery, err error, after int64, seen *loss, grace time.Duration) error {
	if err != nil || !slices.ContainsFunc(batch, func(d *protocol.Delivery) bool { return !d.IsMessage() }) {
		return err
	}
	if seen.after != after || seen.since.IsZero() {
		*seen = loss{after: after, since: time.Now()}
	}
	if time.Since(seen.since) < grace {
		return errUnconfirmed
	}
	return nil
}

// giveUp closes a member whose catch-up cannot read history, so that its
// client resumes; nothing if the member left meanwhile.
func (h *Hub) giveUp(r *room, ms *membership, after int64, err error) {
	if ms.ctx.Err() == nil {
		h.log.Warn("catch-up failed; closing the member so that it resumes", "room", r.name, "after", after, "err", err)
		h.drop(r, ms, protocol.CloseInternal, "history unavailable; resume")
	}
}

// limitStart returns where a catch-up of (after, upto] starts so that it
// delivers at most RecoveryLimit stored messages: after itself when they
// are fewer. Messages still queued for Postgres are not counted, so a
// catch-up may deliver the limit plus that backlog.
func (h *Hub) limitStart(ctx context.Context, room string, after, upto int64, op string) (int64, error) {
	if h.archive == nil {
		return upto - h.opts.RecoveryLimit, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	oldest, count, err := h.archive.Newest(ctx, room, after, upto, h.opts.RecoveryLimit)
	if err != nil {
		h.m.PostgresErrors.WithLabelValues(op).Inc()
		return 0, fmt.Errorf("from postgres: %w", err)
	}
	if count < h.opts.RecoveryLimit {
		return after, nil
	}
	return oldest - 1, nil
}

// announce puts the history_gap from `from` in front of batch, merged with
// the gap batch may start with; from is 0 when there is none.
func announce(room string, from int64, batch []*protocol.Delivery) []*protocol.Delivery {
	if from == 0 {
		return batch
	}
	if first := batch[0]; first.From > 0 {
		return append([]*protocol.Delivery{protocol.Gap(room, from, first.Seq)}, batch[1:]...)
	}
	return append([]*protocol.Delivery{protocol.Gap(room, from, batch[0].Seq-1)}, batch...)
}

// retry runs call until it succeeds, backing off, for up to RetryFor.
func (h *Hub) retry(ctx context.Context, room string, after int64, call func(context.Context) error) error {
	deadline := time.Now().Add(h.opts.RetryFor)
	wait := h.opts.RetryMin
	for {
		err := call(ctx)
		if err == nil {
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("read %s after %d: giving up after %s: %w", room, after, h.opts.RetryFor, err)
		}
		if !errors.Is(err, errUnconfirmed) {
			h.log.Warn("history read failed; retrying", "room", room, "after", after, "in", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, h.opts.RetryMax)
	}
}

// page returns the next page of (after, upto]: messages from after+1 on,
// with history_gaps for what no store holds; empty only when every seq of
// the range was skipped by a reseed.
func (h *Hub) page(ctx context.Context, room string, after, upto int64, op string) ([]*protocol.Delivery, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	recent, err := h.recent.Range(ctx, room, after, upto, h.opts.PageSize)
	if err != nil {
		h.m.RedisErrors.WithLabelValues(op).Inc()
		return nil, fmt.Errorf("from redis: %w", err)
	}
	// Redis keeps the newest messages: the run that starts right after
	// `after`, if any, is the page.
	if out := contiguous(recent, after+1); len(out) > 0 {
		return out, nil
	}
	below := upto
	if len(recent) > 0 {
		below = recent[0].Seq - 1
	}
	out, err := h.archived(ctx, room, after, below, op)
	if err != nil || len(out) > 0 || below == upto {
		return out, err
	}
	// (after, below] were all skipped by a reseed: Redis's run is next.
	return contiguous(recent, below+1), nil
}

// contiguous is the messages of ds that follow on from seq `from` without a hole.
func contiguous(ds []protocol.Delivery, from int64) []*protocol.Delivery {
	var out []*protocol.Delivery
	for i := range ds {
		if ds[i].Seq != from+int64(i) {
			break
		}
		out = append(out, &ds[i])
	}
	return out
}

// archived reads (after, below] from Postgres, which Redis no longer keeps.
// below+1 is a message (Redis's oldest kept) or below is the room's newest
// known seq, so the seqs up to below since the last restart floor were all
// handed out.
func (h *Hub) archived(ctx context.Context, room string, after, below int64, op string) ([]*protocol.Delivery, error) {
	if h.archive == nil {
		return []*protocol.Delivery{protocol.Gap(room, after+1, below)}, nil
	}
	msgs, err := h.stored(ctx, room, after, below, op)
	if err != nil {
		return nil, err
	}
	end := below // the page covers (after, end]
	if len(msgs) == h.opts.PageSize {
		end = msgs[len(msgs)-1].Seq
	}
	if holes(msgs, after, end) {
		// Messages acked and not stored yet are in the persist backlog.
		// It is read before Postgres is read again: an entry leaves it only
		// once its row is committed, so each message is in one or the other.
		pending, err := h.recent.Pending(ctx, room, after, end)
		if err != nil {
			h.m.RedisErrors.WithLabelValues(op).Inc()
			return nil, fmt.Errorf("from the persist backlog: %w", err)
		}
		if msgs, err = h.stored(ctx, room, after, end, op); err != nil {
			return nil, err
		}
		if msgs = merge(msgs, pending, end); len(msgs) > h.opts.PageSize {
			msgs = msgs[:h.opts.PageSize]
			end = msgs[len(msgs)-1].Seq
		}
	}
	var floors []int64
	var age time.Duration
	if holes(msgs, after, end) {
		if floors, age, err = h.archive.Floors(ctx, room, after, end); err != nil {
			h.m.PostgresErrors.WithLabelValues(op).Inc()
			return nil, fmt.Errorf("from postgres: %w", err)
		}
	}
	out := make([]*protocol.Delivery, 0, len(msgs)+1)
	next, skipped := after+1, false
	for _, d := range msgs {
		var skip bool
		out, skip = appendLost(out, room, next, d.Seq-1, floors)
		skipped = skipped || skip
		out = append(out, d)
		next = d.Seq + 1
	}
	out, skip := appendLost(out, room, next, end, floors)
	if (skipped || skip) && age < h.opts.LossGrace {
		// The end of the epoch before a fresh floor may still be on its
		// way to Postgres from a writer that read it from the Redis lost
		// since: pass over it only once the floor is LossGrace old.
		return nil, errUnconfirmed
	}
	return out, nil
}

// stored reads a page of (after, below] from Postgres as deliveries.
func (h *Hub) stored(ctx context.Context, room string, after, below int64, op string) ([]*protocol.Delivery, error) {
	msgs, err := h.archive.Range(ctx, room, after, below, h.opts.PageSize)
	if err != nil {
		h.m.PostgresErrors.WithLabelValues(op).Inc()
		return nil, fmt.Errorf("from postgres: %w", err)
	}
	out := make([]*protocol.Delivery, 0, len(msgs))
	for _, msg := range msgs {
		if msg.Seq <= after || msg.Seq > below || (len(out) > 0 && msg.Seq <= out[len(out)-1].Seq) {
			return nil, errors.New("from postgres: rows out of the range asked for")
		}
		out = append(out, &protocol.Delivery{Room: room, Seq: msg.Seq, Frame: msg.Frame()})
	}
	return out, nil
}

// holes tells whether ds, ascending, leave a seq of (after, end] out.
func holes(ds []*protocol.Delivery, after, end int64) bool {
	return int64(len(ds)) < end-after
}

// merge adds the pending messages up to end that ds lacks, in seq order.
func merge(ds []*protocol.Delivery, pending []protocol.Delivery, end int64) []*protocol.Delivery {
	out := make([]*protocol.Delivery, 0, len(ds)+len(pending))
	i := 0
	for j := range pending {
		p := &pending[j]
		if p.Seq > end {
			break
		}
		for i < len(ds) && ds[i].Seq < p.Seq {
			out = append(out, ds[i])
			i++
		}
		if i < len(ds) && ds[i].Seq == p.Seq {
			continue
		}
		out = append(out, p)
	}
	return append(out, ds[i:]...)
}

// appendLost announces the seqs from..to that no store holds, if any: those
// above the newest restart floor among them. The ones at or below it lie
// between a room's last message and the floor its counter restarted at,
// which no message had. (A message acked and then lost with Redis before it
// reached Postgres, at the very end of its epoch, cannot be told apart from
// them: that is the one loss that goes unannounced.)
// skipped reports that some seqs were passed over as a reseed's.
func appendLost(out []*protocol.Delivery, room string, from, to int64, floors []int64) (_ []*protocol.Delivery, skipped bool) {
	if from > to {
		return out, false
	}
	first := from
	for _, f := range floors {
		if f >= from-1 && f <= to {
			from = f + 1
		}
	}
	skipped = from > first
	if from > to {
		return out, skipped
	}
	return append(out, protocol.Gap(room, from, to)), skipped
}
