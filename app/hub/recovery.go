package hub

import (
	"context"
	"errors"
	"fmt"
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
// Nothing is skipped silently: what neither store holds, and the oldest part
// of a catch-up longer than RecoveryLimit, is announced with a history_gap
// naming the range, in its place in the stream. A Redis or Postgres error is
// retried, never taken for a gap; when retries run out the member is closed
// with 1011 and resumes from the last seq it got.

// catchUp has ms read history up to `to` before anything newer reaches it,
// starting its recovery unless one runs; r.mu is held.
func (h *Hub) catchUp(r *room, ms *membership, to int64, op string) {
	ms.target, ms.pending = to, nil
	if ms.catching {
		return
	}
	ms.catching = true
	if ms.cancel == nil {
		ms.ctx, ms.cancel = context.WithCancel(context.Background())
	}
	go h.recover(r, ms, op)
}

// recover feeds ms from history until it is level with the room, then
// hands it the live messages that waited and turns it live. op labels the
// errors: history for a resume, repair for a hole.
func (h *Hub) recover(r *room, ms *membership, op string) {
	var gapFrom int64 // a history_gap from here to ms.last is not announced yet
	for {
		r.mu.Lock()
		if r.members[ms.m] != ms {
			r.mu.Unlock()
			return
		}
		after, upto := ms.last, ms.target
		var batch []*protocol.Delivery
		switch {
		case upto-after > h.opts.RecoveryLimit && ms.behind:
			r.mu.Unlock()
			h.drop(r, ms, protocol.CloseTryAgainLate, "slow consumer: fell behind the room by more than the recovery limit")
			return
		case upto-after > h.opts.RecoveryLimit:
			if gapFrom == 0 {
				gapFrom = after + 1
			}
			ms.last = upto - h.opts.RecoveryLimit
			r.mu.Unlock()
			continue
		case after >= upto && len(ms.pending) == 0:
			ms.catching, ms.behind = false, false
			r.mu.Unlock()
			return
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
			var err error
			if batch, err = h.read(ms.ctx, r.name, after, upto, op); err != nil {
				if ms.ctx.Err() == nil {
					h.log.Warn("catch-up failed; closing the member so that it resumes", "room", r.name, "after", after, "err", err)
					h.drop(r, ms, protocol.CloseInternal, "history unavailable; resume")
				}
				return
			}
		}
		batch = announce(r.name, gapFrom, batch)
		gapFrom = 0
		if ms.m.Drained(ms.ctx) != nil {
			return // the member left or is closing
		}
		r.mu.Lock()
		if r.members[ms.m] != ms {
			r.mu.Unlock()
			return
		}
		ms.last = batch[len(batch)-1].Seq
		ms.m.Catchup(batch)
		r.mu.Unlock()
		for _, d := range batch {
			if !d.IsMessage() {
				h.m.HistoryGaps.Inc()
			}
		}
	}
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

// read returns the next page of (after, upto]: messages from after+1 on,
// with history_gaps for what neither store holds, never empty. A failed
// call is retried with backoff for RetryFor.
func (h *Hub) read(ctx context.Context, room string, after, upto int64, op string) ([]*protocol.Delivery, error) {
	deadline := time.Now().Add(h.opts.RetryFor)
	wait := h.opts.RetryMin
	for {
		batch, err := h.page(ctx, room, after, upto, op)
		if err == nil {
			return batch, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("read %s after %d: giving up after %s: %w", room, after, h.opts.RetryFor, err)
		}
		h.log.Warn("history read failed; retrying", "room", room, "after", after, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, h.opts.RetryMax)
	}
}

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
	var out []*protocol.Delivery
	for i := range recent {
		if recent[i].Seq != after+1+int64(i) {
			break
		}
		out = append(out, &recent[i])
	}
	if len(out) > 0 {
		return out, nil
	}
	below := upto
	if len(recent) > 0 {
		below = recent[0].Seq - 1
	}
	return h.archived(ctx, room, after, below, op)
}

// archived reads (after, below] from Postgres, which Redis no longer keeps.
func (h *Hub) archived(ctx context.Context, room string, after, below int64, op string) ([]*protocol.Delivery, error) {
	if h.archive == nil {
		return []*protocol.Delivery{protocol.Gap(room, after+1, below)}, nil
	}
	msgs, err := h.archive.Range(ctx, room, after, below, h.opts.PageSize)
	if err != nil {
		h.m.PostgresErrors.WithLabelValues(op).Inc()
		return nil, fmt.Errorf("from postgres: %w", err)
	}
	out := make([]*protocol.Delivery, 0, len(msgs)+1)
	next := after + 1
	for _, msg := range msgs {
		if msg.Seq < next || msg.Seq > below {
			return nil, errors.New("from postgres: rows out of the range asked for")
		}
		if msg.Seq > next {
			out = append(out, protocol.Gap(room, next, msg.Seq-1))
		}
		out = append(out, &protocol.Delivery{Room: room, Seq: msg.Seq, Frame: msg.Frame()})
		next = msg.Seq + 1
	}
	if len(msgs) < h.opts.PageSize && next <= below {
		// A short page is the whole rest of the range: the remainder is gone.
		out = append(out, protocol.Gap(room, next, below))
	}
	return out, nil
}
