package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// resumeFrame joins room after the last seq seen, with the epoch it had.
func resumeFrame(room string, rs *roomState) protocol.ClientFrame {
	since := rs.last
	return protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: &since, Epoch: rs.epoch}
}

// roomState is what the client knows of a joined room.
type roomState struct {
	last    int64  // newest seq queued for the user (or given up as a gap)
	handed  int64  // where the user stands: see LastSeq
	epoch   string // the room's epoch in the latest joined frame
	retries int    // refused rejoins in a row
	// While a gap is fetched from the history API, the room's later
	// messages and gaps wait here, in arrival order.
	fetching bool
	held     []held
}

type held struct {
	msg *protocol.Message
	gap *gapRange
}

type gapRange struct{ from, to int64 }

// message delivers a message frame in order. c.mu must be held.
func (c *Client) message(f protocol.ServerFrame) {
	rs := c.rooms[f.Room]
	if rs == nil {
		return
	}
	if slices.Contains(c.pending, f.Room) {
		// Sent before the joined of a join in flight: the end of the
		// membership that join replaces. Its catch-up, from the last seq
		// delivered, brings the message again, in order.
		return
	}
	ts, _ := time.Parse(time.RFC3339Nano, f.TS)
	msg := protocol.Message{Room: f.Room, Seq: f.Seq, User: f.User, Text: f.Text, ID: f.ID, TS: ts}
	if rs.fetching {
		c.hold(rs, held{msg: &msg})
		return
	}
	c.deliver(rs, msg)
}

// hold keeps h until the room's gap is fetched. The held count against the
// mailbox's bound: past it, or once stalled, h is dropped as put drops it
// (what was held before stays: it precedes what is dropped).
// c.mu must be held.
func (c *Client) hold(rs *roomState, h held) {
	if c.stalled || len(rs.held) >= c.opts.MailboxSize {
		c.overflow()
		return
	}
	rs.held = append(rs.held, h)
}

// deliver queues msg for the user unless its seq was seen, and reports
// false if it was dropped (see put). c.mu must be held.
func (c *Client) deliver(rs *roomState, msg protocol.Message) bool {
	if msg.Seq <= rs.last {
		c.stats.Duplicates++
		return true
	}
	if !c.put(item{msg: msg}) {
		return false
	}
	rs.last = msg.Seq
	return true
}

// gap handles a history_gap frame. c.mu must be held.
func (c *Client) gap(f protocol.ServerFrame) {
	rs := c.rooms[f.Room]
	if rs == nil || f.To == 0 {
		// A server that names no range: nothing to fetch, only to report.
		c.report(&GapError{Room: f.Room, Err: &protocol.Error{Code: f.Code, Message: f.Message}})
		return
	}
	g := gapRange{from: f.From, to: f.To}
	if rs.fetching {
		c.hold(rs, held{gap: &g})
		return
	}
	c.fill(f.Room, rs, g)
}

// fill delivers what the history API holds of g, in order, or reports it
// missing; the room's later messages wait until it is done. c.mu must be
// held.
func (c *Client) fill(room string, rs *roomState, g gapRange) {
	if g.to <= rs.last {
		return // covered already (a gap announced again after a reconnect)
	}
	g.from = max(g.from, rs.last+1)
	if c.stalled {
		c.overflow() // the resume after it announces the gap again
		return
	}
	if !c.opts.FillGaps {
		c.filled(room, rs, g, nil, nil)
		return
	}
	rs.fetching = true
	go func() {
		msgs, err := c.fetch(room, g)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || c.rooms[room] != rs {
			// Closed or left meanwhile. After Close the mailboxes take
			// nothing more, so the room's position stays before the gap:
			// a client resuming from LastSeq is told of the gap again,
			// rather than getting the later messages without it.
			return
		}
		rs.fetching = false
		c.filled(room, rs, g, msgs, err)
		queue := rs.held
		rs.held = nil
		for i, h := range queue {
			if h.gap != nil {
				c.fill(room, rs, *h.gap)
				if rs.fetching {
					rs.held = append(queue[i+1:], rs.held...)
					return
				}
				continue
			}
			c.deliver(rs, *h.msg)
		}
	}()
}

// filled delivers msgs (ascending, within g) and reports the holes among
// them. If the mailbox overflows it stops there, the room's position before
// what was dropped: the resume after the overflow announces the rest of the
// gap again. c.mu must be held.
func (c *Client) filled(room string, rs *roomState, g gapRange, msgs []protocol.Message, err error) {
	next := g.from
	for _, m := range msgs {
		if m.Seq < next || m.Seq > g.to {
			continue
		}
		if m.Seq > next && !c.missing(room, rs, next, m.Seq-1, err) {
			return
		}
		if !c.deliver(rs, m) {
			return
		}
		next = m.Seq + 1
	}
	if next <= g.to && !c.missing(room, rs, next, g.to, err) {
		return
	}
	rs.last = max(rs.last, g.to)
}

// missing reports from..to as a gap and moves the room past it, or reports
// false if it was dropped. c.mu must be held.
func (c *Client) missing(room string, rs *roomState, from, to int64, err error) bool {
	if !c.report(&GapError{Room: room, From: from, To: to, Err: err}) {
		return false
	}
	rs.last = max(rs.last, to)
	return true
}

// historyPage is the largest page the history API serves.
const historyPage = 500

// fetch reads g from the history API, newest page first, and returns what
// it holds in ascending order. Unavailability (a 503 while Postgres is
// down, a broken connection) is retried until FetchTimeout; what was read
// by then is returned with the error.
func (c *Client) fetch(room string, g gapRange) ([]protocol.Message, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
	defer cancel()
	var out []protocol.Message
	for before := g.to + 1; before > g.from; {
		page, err := c.page(ctx, room, before)
		if err != nil {
			slices.Reverse(out)
			return out, err
		}
		if len(page) == 0 || page[0].Seq >= before {
			break
		}
		for i := len(page) - 1; i >= 0; i-- {
			if page[i].Seq >= g.from && page[i].Seq < before {
				out = append(out, page[i])
			}
		}
		before = page[0].Seq
	}
	slices.Reverse(out)
	return out, nil
}

// historyRefusal is a history answer a retry may change: a 5xx, or a 429
// (QUOTA_USER_HISTORY), retried after its Retry-After.
type historyRefusal struct {
	room       string
	before     int64
	status     int
	retryAfter time.Duration
}

func (e *historyRefusal) Error() string {
	return fmt.Sprintf("history of %s before %d: status %d", e.room, e.before, e.status)
}

func (e *historyRefusal) refusedFor() (time.Duration, bool) {
	return e.retryAfter, e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable
}

// errFinal marks a history answer no retry changes.
var errFinal = errors.New("history API refused")

// page is one history page below before, retried while unavailable.
func (c *Client) page(ctx context.Context, room string, before int64) ([]protocol.Message, error) {
	for attempt := 0; ; attempt++ {
		msgs, err := c.pageOnce(ctx, room, before)
		if err == nil || errors.Is(err, errFinal) {
			return msgs, err
		}
		select {
		case <-time.After(c.retryDelay(attempt, err)):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
	}
}

func (c *Client) pageOnce(ctx context.Context, room string, before int64) ([]protocol.Message, error) {
	u := fmt.Sprintf("%s/rooms/%s/messages?before=%d&limit=%d", c.opts.HistoryURL, url.PathEscape(room), before, historyPage)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFinal, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("history of %s before %d: %w", room, before, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, &historyRefusal{room: room, before: before, status: resp.StatusCode, retryAfter: retryAfter(resp.Header, time.Now())}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: history of %s before %d: status %d", errFinal, room, before, resp.StatusCode)
	}
	var body struct {
		Messages []protocol.ServerFrame `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("history of %s before %d: %w", room, before, err)
	}
	msgs := make([]protocol.Message, len(body.Messages))
	for i, f := range body.Messages {
		ts, _ := time.Parse(time.RFC3339Nano, f.TS)
		msgs[i] = protocol.Message{Room: room, Seq: f.Seq, User: f.User, Text: f.Text, ID: f.ID, TS: ts}
	}
	return msgs, nil
}
