// Package client is a Go client for Switchboard's chat protocol. It
// reconnects with exponential backoff and full jitter, resumes every joined
// room from the last seq and epoch it saw, resends unacknowledged messages
// with their original id (the server dedupes them) and drops duplicates by
// seq, so its user sees each room's messages once and in order. A range the
// server can no longer replay (history_gap) is fetched from the history API
// when asked to, and what nobody has is reported as a gap, never skipped in
// silence. Refusals that no retry can cure (401, 403, close 1008) end the
// client with that error; refusals for now wait as long as the server asks:
// Retry-After on a 429 or 503 at connect, retry_after_ms on a rate_limited
// send or join, each with jitter.
//
// The token travels in the handshake as the subprotocol bearer.<jwt>, next
// to switchboard (never in the URL, which proxies log).
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Options configures a Client.
type Options struct {
	URL        string      // ws://host:port/ws
	Token      string      // JWT: the handshake's bearer.<jwt> subprotocol, the history API's bearer token
	Header     http.Header // extra handshake headers, e.g. Origin
	LocalAddr  net.IP      // source address to dial from (spreads clients over ip_hash)
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// NoReconnect makes a lost connection final (for tests of refusals).
	NoReconnect bool
	// FillGaps fetches the range of a history_gap from the history API
	// (GET /rooms/{room}/messages) and delivers what it holds, in order,
	// before the room's later messages; the rest is reported as a GapError.
	// Without it the whole range is reported.
	FillGaps bool
	// HistoryURL is the history API's base URL; by default URL's host with
	// http or https.
	HistoryURL string
	// FetchTimeout bounds the fetch of one gap, retries included (30s).
	FetchTimeout time.Duration
	// MailboxSize bounds the messages and errors the client holds for a
	// user who has not received them yet (10,000). When it is full the
	// client disconnects and resumes once they are read: see Messages.
	MailboxSize int
	// Trace, if set, sees every frame the client writes (sent) or reads,
	// with the number of its connection (1 for the first). Tests record
	// histories with it; it must not block.
	Trace func(conn int, sent bool, frame []byte)
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client closed")

// PolicyError: the server closed the connection with 1008 (the token
// expired). A reconnect with the same token would be refused, so it ends
// the client.
type PolicyError struct{ Reason string }

func (e *PolicyError) Error() string {
	return fmt.Sprintf("closed by the server with %d (%s): reconnecting with the same token cannot succeed", protocol.ClosePolicy, e.Reason)
}

// HandshakeError is a refusal before the upgrade, with its HTTP status. 401
// and 403 end the client; other statuses are retried, a 429 or 503 after
// RetryAfter (its Retry-After header) when it has one.
type HandshakeError struct {
	Status     int
	RetryAfter time.Duration // 0: the response named no wait
	Err        error
}

func (e *HandshakeError) refusedFor() (time.Duration, bool) {
	return e.RetryAfter, e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("handshake refused (%d): %v", e.Status, e.Err)
}
func (e *HandshakeError) Unwrap() error { return e.Err }

// terminal reports whether no reconnect can get past err.
func terminal(err error) bool {
	var he *HandshakeError
	return errors.As(err, &he) && (he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden)
}

// GapError reports messages From..To (inclusive) of Room that the client
// could not deliver: neither the server's resume nor the history API had
// them. Err says why the history API did not fill them, if it failed.
type GapError struct {
	Room     string
	From, To int64
	Err      error
}

func (e *GapError) Error() string {
	s := fmt.Sprintf("room %s: messages %d to %d are missing", e.Room, e.From, e.To)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}
func (e *GapError) Unwrap() error { return e.Err }

// JoinError reports a room the client was in and could not join again
// after a reconnect: the server refused the rejoin for good, so the room
// is dropped.
type JoinError struct {
	Room string
	Err  error
}

func (e *JoinError) Error() string { return fmt.Sprintf("rejoin %s: %v", e.Room, e.Err) }
func (e *JoinError) Unwrap() error { return e.Err }

// Stats counts what happened to a client's connections.
type Stats struct {
	Connects   int            // successful connections, the first included
	CloseCodes map[int]int    // close codes received from the server (1006: no close frame)
	Errors     map[string]int // error frames by code
	Duplicates int            // messages dropped because their seq was already seen
	// Overflows counts the times the mailbox was full (see Messages): the
	// client disconnected until its user had read it. Dropped counts the
	// messages and errors not queued meanwhile; the resume brings them again.
	Overflows, Dropped int
	// When the latest connection was welcomed and when the one before it
	// broke: their difference is the latest reconnect time.
	LastConnect, LastDisconnect time.Time
}

// Client is one logical chat connection that survives reconnects.
type Client struct {
	opts   Options
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	http   *http.Client
	prefix string
	nextID atomic.Int64
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	writeMu sync.Mutex // orders writes; taken before mu
	mu      sync.Mutex
	cur     *wire
	conns   int
	inst    string
	rooms   map[string]*roomState // joined rooms
	joins   map[string]*joinCall  // Join and Resume calls waiting for joined
	pending []string              // rooms whose join on cur awaits its answer, in the order written
	sends   map[string]*sendCall
	stats   Stats
	closed  bool
	err     error         // why the client stopped, once done is closed
	up      chan struct{} // closed while connected; replaced on disconnect
	// stalled: the mailbox overflowed. Nothing more is queued until the
	// user has drained it and the client has reconnected (see overflow).
	stalled bool

	box  *mailbox
	done chan struct{} // closed when serve and the mailbox's pump have returned

	// afterCurrent, set by tests, runs in locked() between current()'s
	// answer and the locks: where a reconnect may overtake a Join or Leave.
	afterCurrent func()
}

// wire is one connection with its number.
type wire struct {
	conn *websocket.Conn
	n    int
}

type result struct {
	seq int64
	err error
}

type joinCall struct {
	since *int64
	reply chan result
}

type sendCall struct {
	room, text string
	reply      chan result
	on         *wire // the connection it was last written on
	// held: refused rate_limited, it waits for its retry_after_ms; no
	// connection sends it until then (see retrySend).
	held bool
}

// Dial connects and returns once the server has welcomed the client. Until
// ctx ends it retries, with backoff, the failures a reconnect retries.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 30 * time.Second
	}
	if opts.HistoryURL == "" {
		opts.HistoryURL = historyBase(opts.URL)
	}
	if opts.MailboxSize <= 0 {
		opts.MailboxSize = 10_000
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	c := &Client{
		opts:   opts,
		http:   &http.Client{Timeout: 10 * time.Second},
		prefix: hex.EncodeToString(id[:]),
		rooms:  map[string]*roomState{},
		joins:  map[string]*joinCall{},
		sends:  map[string]*sendCall{},
		stats:  Stats{CloseCodes: map[int]int{}, Errors: map[string]int{}},
		up:     make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.box = newMailbox(opts.MailboxSize, c.taken)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	nd := &net.Dialer{Timeout: 5 * time.Second}
	if opts.LocalAddr != nil {
		nd.LocalAddr = &net.TCPAddr{IP: opts.LocalAddr}
	}
	c.dial = nd.DialContext
	w, err := c.connectFirst(ctx)
	if err != nil {
		c.cancel()
		c.box.close()
		return nil, err
	}
	go c.serve(w)
	return c, nil
}

// historyBase turns ws://host/ws into http://host.
func historyBase(wsURL string) string {
	u := strings.TrimSuffix(wsURL, "/ws")
	if rest, ok := strings.CutPrefix(u, "ws"); ok {
		return "http" + rest
	}
	return u
}

// connect dials and reads the welcome frame. A Close during the dial ends
// it, and a connection that completes after Close is closed at once.
func (c *Client) connect(ctx context.Context) (*wire, error) {
	// gorilla's handshake does not watch ctx once the TCP connection is up:
	// Close ends it by closing that connection.
	var mu sync.Mutex
	var raw net.Conn
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := c.dial(ctx, network, addr)
			mu.Lock()
			raw = conn
			mu.Unlock()
			return conn, err
		}}
	stop := context.AfterFunc(c.ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			raw.Close()
		}
	})
	h := http.Header{}
	for k, v := range c.opts.Header {
		h[k] = v
	}
	// The token as a subprotocol, as browsers send it: a URL's query
	// string ends up in access logs. The server selects switchboard.
	dialer.Subprotocols = auth.Subprotocols(c.opts.Token)
	conn, resp, err := dialer.DialContext(ctx, c.opts.URL, h)
	stop()
	if err != nil {
		if resp != nil {
			return nil, &HandshakeError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header, time.Now()), Err: err}
		}
		return nil, fmt.Errorf("dial %s: %w", c.opts.URL, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return nil, ErrClosed
	}
	c.conns++
	w := &wire{conn: conn, n: c.conns}
	c.cur = w // from here Close closes it, which ends the read below
	c.mu.Unlock()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := conn.ReadMessage()
	var f protocol.ServerFrame
	if err == nil {
		c.trace(w, false, data)
		err = json.Unmarshal(data, &f)
	}
	if err != nil || f.Op != protocol.OpWelcome {
		conn.Close()
		return nil, fmt.Errorf("dial %s: no welcome frame (got %s, %v)", c.opts.URL, data, err)
	}
	conn.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.inst = f.Instance
	c.stats.Connects++
	c.stats.LastConnect = time.Now()
	c.mu.Unlock()
	return w, nil
}

// serve reads from w until it breaks, then reconnects and resumes, until
// Close or a refusal no reconnect can cure.
func (c *Client) serve(w *wire) {
	defer close(c.done)
	defer func() { <-c.box.gone }() // so that LastSeq is final once done
	for {
		c.online(w)
		code, reason := c.read(w)
		c.mu.Lock()
		c.up = make(chan struct{})
		closed := c.closed
		c.mu.Unlock()
		switch {
		case closed || c.opts.NoReconnect:
			c.fail(ErrClosed)
			return
		case code == protocol.ClosePolicy:
			c.fail(&PolicyError{Reason: reason})
			return
		}
		var err error
		if w, err = c.reconnect(); err != nil {
			c.fail(err)
			return
		}
	}
}

// online resumes every joined room, repeats the joins still unanswered and
// resends every unacked message on a fresh connection, then lets callers
// write.
func (c *Client) online(w *wire) {
	c.writeMu.Lock()
	c.mu.Lock()
	c.pending = nil
	var frames []any
	for room, rs := range c.rooms {
		frames = append(frames, resumeFrame(room, rs))
		c.pending = append(c.pending, room)
	}
	for room, j := range c.joins {
		if c.rooms[room] == nil {
			frames = append(frames, protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: j.since})
			c.pending = append(c.pending, room)
		}
	}
	frames = append(frames, c.unsent(w)...)
	c.mu.Unlock()
	for _, f := range frames {
		c.writeLocked(w, f)
	}
	c.writeMu.Unlock()
	// Sends registered while the frames above were written are sent now;
	// from here on SendID writes its own.
	c.mu.Lock()
	late := c.unsent(w)
	close(c.up)
	c.mu.Unlock()
	for _, f := range late {
		c.write(w, f)
	}
}

// unsent marks the sends not yet written on w as written and returns their
// frames. c.mu must be held.
func (c *Client) unsent(w *wire) []any {
	var frames []any
	for id, p := range c.sends {
		if p.on != w && !p.held {
			p.on = w
			frames = append(frames, protocol.ClientFrame{Op: protocol.OpSend, Room: p.room, Text: p.text, ID: id})
		}
	}
	return frames
}

// backoff is full jitter: a random wait up to the exponential cap, so
// clients dropped together do not come back together.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := float64(c.opts.MinBackoff) * math.Pow(2, float64(min(attempt, 20)))
	return time.Duration(mrand.Int64N(int64(min(ceiling, float64(c.opts.MaxBackoff))) + 1))
}

// maxRetryAfter caps a wait the server asks for.
const maxRetryAfter = 5 * time.Minute

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// there is none or it cannot be read.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(n, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// jittered is d and up to a quarter of it more: clients told the same wait
// do not come back together.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration(mrand.Int64N(int64(d)/4+1))
}

// retryAfterMS is the jittered wait of a rate_limited frame's retry_after_ms.
func retryAfterMS(ms int64) time.Duration {
	return jittered(min(time.Duration(ms)*time.Millisecond, maxRetryAfter))
}

// retryDelay is the wait before attempt (0 for the first retry) after err:
// a 429's or 503's Retry-After plus jitter, or without one the backoff, and
// never less than MinBackoff after such a refusal; else the backoff.
func (c *Client) retryDelay(attempt int, err error) time.Duration {
	var r interface{ refusedFor() (time.Duration, bool) }
	if errors.As(err, &r) {
		if d, refused := r.refusedFor(); refused {
			if d > 0 {
				return jittered(d)
			}
			return max(c.backoff(attempt), c.opts.MinBackoff)
		}
	}
	return c.backoff(attempt)
}

// connectFirst connects as a reconnect does: a failure that a retry can get
// past (503 while an instance drains, a 502 from a balancer whose instance
// just died, a refused connection) is tried again with backoff until ctx
// ends, which returns the last failure; 401, 403, and any failure with
// NoReconnect, return at once.
func (c *Client) connectFirst(ctx context.Context) (*wire, error) {
	for attempt := 0; ; attempt++ {
		w, err := c.connect(ctx)
		if err == nil || terminal(err) || c.opts.NoReconnect {
			return w, err
		}
		select {
		case <-time.After(c.retryDelay(attempt, err)):
		case <-ctx.Done():
			return nil, err
		}
	}
}

func (c *Client) reconnect() (*wire, error) {
	var last error // the previous attempt's failure
	for attempt := 0; ; attempt++ {
		select {
		case <-time.After(c.retryDelay(attempt, last)):
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
		if !c.drained() {
			return nil, ErrClosed
		}
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		w, err := c.connect(ctx)
		cancel()
		switch {
		case err == nil:
			return w, nil
		case c.ctx.Err() != nil:
			return nil, ErrClosed
		case terminal(err):
			return nil, err
		}
		last = err
	}
}

// read handles w's frames until it breaks and returns the close code (1006
// without a close frame) and reason.
func (c *Client) read(w *wire) (int, string) {
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			code, reason := 1006, ""
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Text
			}
			c.mu.Lock()
			if !c.closed && !c.stalled { // not a close of our own
				c.stats.CloseCodes[code]++
				c.stats.LastDisconnect = time.Now()
			}
			c.mu.Unlock()
			w.conn.Close()
			return code, reason
		}
		c.trace(w, false, data)
		var f protocol.ServerFrame
		if json.Unmarshal(data, &f) == nil {
			c.handle(w, f)
		}
	}
}

func (c *Client) handle(w *wire, f protocol.ServerFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Op {
	case protocol.OpJoined:
		c.joined(f)
	case protocol.OpMessage:
		c.message(f)
	case protocol.OpAck:
		if p, ok := c.sends[f.ID]; ok {
			delete(c.sends, f.ID)
			p.reply <- result{seq: f.Seq}
		}
	case protocol.OpError:
		c.stats.Errors[f.Code]++
		c.refused(w, f)
	}
}

// answered removes room's oldest unanswered join. c.mu must be held.
func (c *Client) answered(room string) {
	if i := slices.Index(c.pending, room); i >= 0 {
		c.pending = slices.Delete(c.pending, i, i+1)
	}
}

// joined records a room's latest seq and epoch and answers its Join call.
// c.mu must be held.
func (c *Client) joined(f protocol.ServerFrame) {
	c.answered(f.Room)
	rs := c.rooms[f.Room]
	j, asked := c.joins[f.Room]
	if rs == nil && !asked {
		// The answer to a resume of a room left since (the leave went out
		// on the connection that broke): the user is not in it any more.
		return
	}
	if rs == nil {
		rs = &roomState{last: f.Seq, handed: f.Seq}
		c.rooms[f.Room] = rs
	}
	rs.epoch, rs.retries = f.Epoch, 0
	if asked {
		delete(c.joins, f.Room)
		j.reply <- result{seq: f.Seq}
	}
}

// refused routes an error frame to what it answers. c.mu must be held.
func (c *Client) refused(w *wire, f protocol.ServerFrame) {
	err := &protocol.Error{Code: f.Code, Message: f.Message, Ref: f.Ref, Quota: f.Quota, RetryAfterMS: f.RetryAfterMS}
	later := f.Code == protocol.CodeRateLimited && f.RetryAfterMS > 0 // a quota: try again then
	switch {
	case f.Ref != "":
		if p, ok := c.sends[f.Ref]; ok {
			if later {
				// Not stored: the same id again once the quota allows.
				p.held = true
				time.AfterFunc(retryAfterMS(f.RetryAfterMS), func() { c.retrySend(f.Ref, p) })
				return
			}
			delete(c.sends, f.Ref)
			p.reply <- result{err: err}
		}
		return
	case f.Code == protocol.CodeHistoryGap:
		c.gap(f)
		return
	case f.Code == protocol.CodeNotJoined:
		return // a leave's refusal (a send's carries its ref): nobody waits for it
	}
	// A join's refusal. The server answers a connection's frames in order,
	// so one that does not name its room answers the oldest join unanswered.
	room := f.Room
	if room == "" {
		if len(c.pending) == 0 {
			c.report(fmt.Errorf("error frame that answers nothing pending: %w", err))
			return
		}
		room = c.pending[0]
	}
	c.answered(room)
	if j, ok := c.joins[room]; ok && later {
		// A join quota: the same join once it allows.
		time.AfterFunc(retryAfterMS(f.RetryAfterMS), func() { c.retryJoin(w, room, j) })
		return
	}
	// The server's join leaves the room first: after a refusal the
	// connection is in no state of it.
	if j, ok := c.joins[room]; ok {
		delete(c.joins, room)
		delete(c.rooms, room)
		j.reply <- result{err: fmt.Errorf("join %s: %w", room, err)}
		return
	}
	rs := c.rooms[room]
	if rs == nil {
		return
	}
	if f.Code != protocol.CodeInternal && !later {
		// Not reported (mailbox full): the room stays, so the resume after
		// the overflow is refused again, and reported then.
		if c.report(&JoinError{Room: room, Err: err}) {
			delete(c.rooms, room)
		}
		return
	}
	// A rejoin the server could not serve for now, or not yet (a join
	// quota): try again on this connection until it answers or the
	// connection is replaced.
	rs.retries++
	wait := c.backoff(rs.retries)
	if later {
		wait = retryAfterMS(f.RetryAfterMS)
	}
	time.AfterFunc(wait, func() { c.rejoin(w, room, rs) })
}

// retrySend sends again, with its id, a send refused rate_limited, once its
// retry_after_ms has passed: on the current connection if the client is
// connected; if not, online() sends it on the next one.
func (c *Client) retrySend(id string, p *sendCall) {
	c.mu.Lock()
	if c.closed || c.sends[id] != p {
		c.mu.Unlock() // answered, given up by its caller, or the client ended
		return
	}
	p.held = false
	var w *wire
	select {
	case <-c.up:
		w, p.on = c.cur, c.cur
	default:
	}
	c.mu.Unlock()
	if w != nil {
		c.write(w, protocol.ClientFrame{Op: protocol.OpSend, Room: p.room, Text: p.text, ID: id})
	}
}

// retryJoin repeats, on w, a Join or Resume refused by a join quota. If w
// was replaced meanwhile, online() has repeated it on the new connection.
func (c *Client) retryJoin(w *wire, room string, j *joinCall) {
	c.repeatJoin(w, room, func() (protocol.ClientFrame, bool) {
		if rs := c.rooms[room]; rs != nil {
			return resumeFrame(room, rs), c.joins[room] == j // after what came before the refusal
		}
		return protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: j.since}, c.joins[room] == j
	})
}

// rejoin repeats, on w, the resume of a room refused for now.
func (c *Client) rejoin(w *wire, room string, rs *roomState) {
	c.repeatJoin(w, room, func() (protocol.ClientFrame, bool) { return resumeFrame(room, rs), c.rooms[room] == rs })
}

// repeatJoin writes on w the frame that frame returns, with room pending,
// unless the client ended, w was replaced, a join of room is in flight or
// frame (called with c.mu held) says the join is no longer wanted.
func (c *Client) repeatJoin(w *wire, room string, frame func() (f protocol.ClientFrame, wanted bool)) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	var f protocol.ClientFrame
	wanted := false
	if !c.closed && c.cur == w && !slices.Contains(c.pending, room) {
		f, wanted = frame()
	}
	if !wanted {
		c.mu.Unlock()
		return
	}
	c.pending = append(c.pending, room)
	c.mu.Unlock()
	c.writeLocked(w, f)
}

// write sends one frame on w; a failed write surfaces as a read error.
func (c *Client) write(w *wire, f any) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.writeLocked(w, f)
}

func (c *Client) writeLocked(w *wire, f any) {
	data, _ := json.Marshal(f)
	c.trace(w, true, data)
	w.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = w.conn.WriteMessage(websocket.TextMessage, data)
}

func (c *Client) trace(w *wire, sent bool, data []byte) {
	if c.opts.Trace != nil {
		c.opts.Trace(w.n, sent, data)
	}
}

// locked waits until the client is connected and returns the connection
// with writeMu and mu held. A frame registered and written under them goes
// out on the connection whose online() has run, or, if that one breaks,
// is repeated by the next online(): never on a connection already
// replaced, whose loss nothing would notice.
func (c *Client) locked(ctx context.Context) (*wire, error) {
	for {
		w, err := c.current(ctx)
		if err != nil {
			return nil, err
		}
		if c.afterCurrent != nil {
			c.afterCurrent()
		}
		c.writeMu.Lock()
		c.mu.Lock()
		if c.cur == w {
			return w, nil
		}
		// Replaced meanwhile: wait for the new connection's online().
		c.mu.Unlock()
		c.writeMu.Unlock()
	}
}

// current waits until the client is connected and returns the connection.
func (c *Client) current(ctx context.Context) (*wire, error) {
	c.mu.Lock()
	w, up, closed := c.cur, c.up, c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	select {
	case <-up:
		return w, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Join joins room and returns its latest seq; from then on its new messages
// arrive on Messages. Joining a room the client is in resumes it from the
// last seq seen.
func (c *Client) Join(ctx context.Context, room string) (int64, error) {
	return c.join(ctx, room, nil)
}

// Resume joins room asking for every message after since first.
func (c *Client) Resume(ctx context.Context, room string, since int64) (int64, error) {
	return c.join(ctx, room, &since)
}

func (c *Client) join(ctx context.Context, room string, since *int64) (int64, error) {
	w, err := c.locked(ctx)
	if err != nil {
		return 0, fmt.Errorf("join %s: %w", room, err)
	}
	j := &joinCall{since: since, reply: make(chan result, 1)}
	// Registered only once connected: online() would otherwise send the
	// same join a second time.
	rs := c.rooms[room]
	switch {
	case since != nil:
		rs = &roomState{last: *since, handed: *since}
		c.rooms[room] = rs
	case rs != nil:
		last := rs.last
		j.since = &last
	}
	f := protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: j.since}
	if rs != nil {
		f.Epoch = rs.epoch
	}
	c.joins[room] = j
	c.pending = append(c.pending, room)
	c.mu.Unlock()
	c.writeLocked(w, f)
	c.writeMu.Unlock()
	select {
	case r := <-j.reply:
		return r.seq, r.err
	case <-ctx.Done():
		c.mu.Lock()
		if c.joins[room] == j {
			delete(c.joins, room)
		}
		c.mu.Unlock()
		return 0, fmt.Errorf("join %s: %w", room, ctx.Err())
	}
}

// Leave leaves room and returns the last seq delivered in it: Resume
// from there gets what was sent meanwhile, without a duplicate.
func (c *Client) Leave(ctx context.Context, room string) (int64, error) {
	w, err := c.locked(ctx)
	if err != nil {
		return 0, fmt.Errorf("leave %s: %w", room, err)
	}
	var last int64
	if rs := c.rooms[room]; rs != nil {
		last = rs.last
	}
	delete(c.rooms, room)
	c.mu.Unlock()
	c.writeLocked(w, protocol.ClientFrame{Op: protocol.OpLeave, Room: room})
	c.writeMu.Unlock()
	return last, nil
}

// Send sends text to room and returns the seq the server acked it with. A
// message in flight when the connection drops is sent again, with the same
// id, after the reconnect.
func (c *Client) Send(ctx context.Context, room, text string) (int64, error) {
	return c.SendID(ctx, room, c.NewID(), text)
}

// NewID returns a message id no other call of this client returns.
func (c *Client) NewID() string { return fmt.Sprintf("%s-%d", c.prefix, c.nextID.Add(1)) }

// SendID is Send with the caller's message id (to retry a send by hand).
func (c *Client) SendID(ctx context.Context, room, id, text string) (int64, error) {
	p := &sendCall{room: room, text: text, reply: make(chan result, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	c.sends[id] = p
	// Connected: write it here. Otherwise online() writes it once the rooms
	// are joined again on the next connection.
	select {
	case <-c.up:
		p.on = c.cur
	default:
	}
	w := p.on
	c.mu.Unlock()
	if w != nil {
		c.write(w, protocol.ClientFrame{Op: protocol.OpSend, Room: room, Text: text, ID: id})
	}
	select {
	case r := <-p.reply:
		if r.err != nil {
			return 0, fmt.Errorf("send %s to %s: %w", id, room, r.err)
		}
		return r.seq, nil
	case <-ctx.Done():
		c.mu.Lock()
		if c.sends[id] == p {
			delete(c.sends, id)
		}
		c.mu.Unlock()
		return 0, fmt.Errorf("send %s to %s: %w", id, room, ctx.Err())
	}
}

// Messages delivers each room's messages once, in seq order. The client
// never waits for its user: messages and errors not yet received wait in a
// mailbox of Options.MailboxSize, in the order the client produced them.
// When it is full, the client stops queuing (what does not fit is dropped,
// and so is everything after it until the reconnect), closes the
// connection, waits until the user has received everything queued, then
// reconnects and resumes every room after the last message it had queued:
// the dropped messages come again, in order, without gap or duplicate.
// Meanwhile Join and Send wait for the connection. Stats counts Overflows
// and Dropped. The channel is closed once the client stops (Close, or an
// end in Err): messages not received by then are dropped, and LastSeq
// tells where a new client resumes to get them.
func (c *Client) Messages() <-chan protocol.Message { return c.box.msgs }

// Errors reports what went wrong with no call waiting for it: a *GapError
// for messages that could not be delivered, a *JoinError for a room dropped
// after a reconnect. Errors share the mailbox of Messages and its order: an
// error is handed over only after the messages queued before it. Up to 64
// handed-over errors wait on the channel itself; beyond that the mailbox
// stops moving until they are read, and fills up, as with Messages. After
// the client stops, the errors handed over are still read, then the channel
// is closed.
func (c *Client) Errors() <-chan error { return c.box.errs }

// Instance is the server instance of the current connection.
func (c *Client) Instance() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inst
}

// LastSeq is where the user stands in room: the seq of the last message of
// room received from Messages, or the end of the last gap handed to Errors
// if that came later, or the seq the room was joined or resumed at if
// nothing came since; 0 for a room not joined. Once the client has stopped
// it is final: a new client that resumes from it gets what this one did
// not hand over, with no gap and no duplicate.
func (c *Client) LastSeq(room string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs := c.rooms[room]; rs != nil {
		return rs.handed
	}
	return 0
}

// Stats returns a copy of the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.CloseCodes, s.Errors = map[int]int{}, map[string]int{}
	for k, v := range c.stats.CloseCodes {
		s.CloseCodes[k] = v
	}
	for k, v := range c.stats.Errors {
		s.Errors[k] = v
	}
	return s
}

// Done is closed once the client has stopped for good; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: ErrClosed after Close or with
// NoReconnect, a *HandshakeError (401, 403) or a *PolicyError (1008) when
// the server refused it for good; nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the client: a normal close frame, no reconnect. It returns
// once the client has stopped, also in the middle of a reconnect.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	w := c.cur
	c.cancel()
	c.mu.Unlock()
	// WriteControl may run concurrently with a write in progress, which
	// the close then ends: Close never waits behind a stuck write.
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	w.conn.Close()
	<-c.done
	return nil
}

// fail ends every call still waiting with err.
func (c *Client) fail(err error) {
	c.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	for id, p := range c.sends {
		delete(c.sends, id)
		p.reply <- result{err: err}
	}
	for room, j := range c.joins {
		delete(c.joins, room)
		j.reply <- result{err: err}
	}
	c.box.close()
}

// report queues err for Errors; false if the mailbox had no room for it.
// c.mu must be held.
func (c *Client) report(err error) bool { return c.put(item{err: err}) }

// put queues it for the user. If the mailbox is full, or was since the
// last reconnect, it is dropped and the client stalls: nothing more is
// queued, which keeps each room's messages contiguous, and the connection
// is closed; reconnect waits until the user has drained the mailbox, then
// resumes every room after the last message queued. c.mu must be held.
func (c *Client) put(it item) bool {
	if !c.stalled && c.box.put(it) {
		return true
	}
	c.overflow()
	return false
}

// overflow counts a drop and stalls the client (see put). c.mu must be held.
func (c *Client) overflow() {
	c.stats.Dropped++
	if !c.stalled {
		c.stalled = true
		c.stats.Overflows++
		// Closed on the side: the reader, which may be the caller, must
		// not wait for a write to a full socket.
		w := c.cur
		go func() {
			_ = w.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "client mailbox full"), time.Now().Add(time.Second))
			w.conn.Close()
		}()
	}
}

// drained waits, if the client has stalled, until its user has received
// everything queued, and reports false if the client is closed first.
func (c *Client) drained() bool {
	c.mu.Lock()
	stalled := c.stalled
	c.mu.Unlock()
	if !stalled {
		return true
	}
	select {
	case <-c.box.drained():
	case <-c.ctx.Done():
		return false
	}
	// Nothing was queued meanwhile: each room's last queued seq is the
	// last seq its user received, where the resume starts.
	c.mu.Lock()
	c.stalled = false
	c.mu.Unlock()
	return true
}

// taken records where the user stands in the room of an item handed over.
func (c *Client) taken(it item) {
	room, pos := it.msg.Room, it.msg.Seq
	if it.err != nil {
		var ge *GapError
		if !errors.As(it.err, &ge) || ge.To == 0 {
			return
		}
		room, pos = ge.Room, ge.To
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs := c.rooms[room]; rs != nil {
		rs.handed = pos
	}
}
