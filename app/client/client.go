// Package client is a Go client for Switchboard's chat protocol. It
// reconnects with exponential backoff and full jitter, resumes every joined
// room from the last seq it saw, resends unacknowledged messages with their
// original id (the server dedupes them) and drops duplicates by seq, so its
// user sees each room's messages once and in order.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// Options configures a Client.
type Options struct {
	URL        string      // ws://host:port/ws
	Token      string      // JWT, sent as a bearer token
	Header     http.Header // extra handshake headers, e.g. Origin
	LocalAddr  net.IP      // source address to dial from (spreads clients over ip_hash)
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// NoReconnect makes a lost connection final (for tests of refusals).
	NoReconnect bool
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client closed")

// Stats counts what happened to a client's connections.
type Stats struct {
	Connects   int            // successful connections, the first included
	CloseCodes map[int]int    // close codes received from the server (1006: no close frame)
	Errors     map[string]int // error frames by code
	Duplicates int            // messages dropped because their seq was already seen
	// When the latest connection was welcomed and when the one before it
	// broke: their difference is the latest reconnect time.
	LastConnect, LastDisconnect time.Time
}

// Client is one logical chat connection that survives reconnects.
type Client struct {
	opts   Options
	dialer websocket.Dialer
	prefix string
	nextID atomic.Int64

	writeMu sync.Mutex
	mu      sync.Mutex
	conn    *websocket.Conn
	inst    string
	rooms   map[string]int64 // joined rooms and the last seq seen
	joins   map[string]chan result
	sends   map[string]*pending
	stats   Stats
	closed  bool
	up      chan struct{} // closed while connected; replaced on disconnect

	msgs *mailbox
	stop chan struct{} // closed by Close
	done chan struct{} // closed when serve has returned
}

type result struct {
	seq int64
	err error
}

type pending struct {
	room, text string
	reply      chan result
	conn       *websocket.Conn // the connection it was last written on
}

// Dial connects and returns once the server has welcomed the client.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	c := &Client{
		opts:   opts,
		prefix: hex.EncodeToString(id[:]),
		rooms:  map[string]int64{},
		joins:  map[string]chan result{},
		sends:  map[string]*pending{},
		stats:  Stats{CloseCodes: map[int]int{}, Errors: map[string]int{}},
		up:     make(chan struct{}),
		msgs:   newMailbox(),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	nd := &net.Dialer{Timeout: 5 * time.Second}
	if opts.LocalAddr != nil {
		nd.LocalAddr = &net.TCPAddr{IP: opts.LocalAddr}
	}
	c.dialer = websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 5 * time.Second}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	go c.serve(conn)
	return c, nil
}

// HandshakeError is a refusal before the upgrade, with its HTTP status.
type HandshakeError struct {
	Status int
	Err    error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("handshake refused (%d): %v", e.Status, e.Err)
}
func (e *HandshakeError) Unwrap() error { return e.Err }

// connect dials and reads the welcome frame.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	for k, v := range c.opts.Header {
		h[k] = v
	}
	h.Set("Authorization", "Bearer "+c.opts.Token)
	conn, resp, err := c.dialer.DialContext(ctx, c.opts.URL, h)
	if err != nil {
		if resp != nil {
			return nil, &HandshakeError{Status: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("dial %s: %w", c.opts.URL, err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f protocol.ServerFrame
	if err := conn.ReadJSON(&f); err != nil || f.Op != protocol.OpWelcome {
		conn.Close()
		return nil, fmt.Errorf("dial %s: no welcome frame (got %+v, %v)", c.opts.URL, f, err)
	}
	conn.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.conn, c.inst = conn, f.Instance
	c.stats.Connects++
	c.stats.LastConnect = time.Now()
	c.mu.Unlock()
	return conn, nil
}

// serve reads from conn until it breaks, then reconnects and resumes.
func (c *Client) serve(conn *websocket.Conn) {
	defer close(c.done)
	for {
		c.online(conn)
		c.read(conn)
		c.mu.Lock()
		c.up = make(chan struct{})
		closed := c.closed
		c.mu.Unlock()
		if closed || c.opts.NoReconnect {
			c.fail(ErrClosed)
			return
		}
		var err error
		if conn, err = c.reconnect(); err != nil {
			c.fail(err)
			return
		}
	}
}

// online resumes every joined room and resends every unacked message on a
// fresh connection, then lets callers write.
func (c *Client) online(conn *websocket.Conn) {
	c.mu.Lock()
	var frames []protocol.ClientFrame
	for room, last := range c.rooms {
		since := last
		frames = append(frames, protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: &since})
	}
	frames = append(frames, c.unsent(conn)...)
	c.mu.Unlock()
	for _, f := range frames {
		c.write(conn, f)
	}
	// Sends registered while the frames above were written are sent now;
	// from here on SendID writes its own.
	c.mu.Lock()
	late := c.unsent(conn)
	close(c.up)
	c.mu.Unlock()
	for _, f := range late {
		c.write(conn, f)
	}
}

// unsent marks the sends not yet written on conn as written and returns
// their frames. c.mu must be held.
func (c *Client) unsent(conn *websocket.Conn) []protocol.ClientFrame {
	var frames []protocol.ClientFrame
	for id, p := range c.sends {
		if p.conn != conn {
			p.conn = conn
			frames = append(frames, protocol.ClientFrame{Op: protocol.OpSend, Room: p.room, Text: p.text, ID: id})
		}
	}
	return frames
}

func (c *Client) reconnect() (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		// Full jitter: a random wait up to the exponential cap, so clients
		// dropped together do not come back together.
		ceiling := float64(c.opts.MinBackoff) * math.Pow(2, float64(min(attempt, 20)))
		wait := time.Duration(mrand.Int64N(int64(min(ceiling, float64(c.opts.MaxBackoff))) + 1))
		select {
		case <-time.After(wait):
		case <-c.stop:
			return nil, ErrClosed
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := c.connect(ctx)
		cancel()
		if err == nil {
			return conn, nil
		}
	}
}

func (c *Client) read(conn *websocket.Conn) {
	for {
		var f protocol.ServerFrame
		if err := conn.ReadJSON(&f); err != nil {
			code := 1006
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			c.mu.Lock()
			if !c.closed {
				c.stats.CloseCodes[code]++
				c.stats.LastDisconnect = time.Now()
			}
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.handle(f)
	}
}

func (c *Client) handle(f protocol.ServerFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Op {
	case protocol.OpJoined:
		if _, ok := c.rooms[f.Room]; !ok {
			c.rooms[f.Room] = f.Seq
		}
		if ch, ok := c.joins[f.Room]; ok {
			delete(c.joins, f.Room)
			ch <- result{seq: f.Seq}
		}
	case protocol.OpMessage:
		last, ok := c.rooms[f.Room]
		if !ok {
			return
		}
		if f.Seq <= last {
			c.stats.Duplicates++
			return
		}
		c.rooms[f.Room] = f.Seq
		ts, _ := time.Parse(time.RFC3339Nano, f.TS)
		c.msgs.put(protocol.Message{Room: f.Room, Seq: f.Seq, User: f.User, Text: f.Text, ID: f.ID, TS: ts})
	case protocol.OpAck:
		if p, ok := c.sends[f.ID]; ok {
			delete(c.sends, f.ID)
			p.reply <- result{seq: f.Seq}
		}
	case protocol.OpError:
		c.stats.Errors[f.Code]++
		err := &protocol.Error{Code: f.Code, Message: f.Message, Ref: f.Ref}
		if p, ok := c.sends[f.Ref]; ok && f.Ref != "" {
			delete(c.sends, f.Ref)
			p.reply <- result{err: err}
			return
		}
		if f.Code == protocol.CodeHistoryGap {
			return // the resume goes on after the gap
		}
		for room, ch := range c.joins {
			// A join's refusal carries no ref: it fails the join in progress.
			delete(c.joins, room)
			ch <- result{err: err}
			break
		}
	}
}

// write sends one frame on conn; a failed write surfaces as a read error.
func (c *Client) write(conn *websocket.Conn, f protocol.ClientFrame) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = conn.WriteJSON(f)
}

// current waits until the client is connected and returns the connection.
func (c *Client) current(ctx context.Context) (*websocket.Conn, error) {
	c.mu.Lock()
	conn, up, closed := c.conn, c.up, c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	select {
	case <-up:
		return conn, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Join joins room and returns its latest seq; from then on its new messages
// arrive on Messages.
func (c *Client) Join(ctx context.Context, room string) (int64, error) {
	return c.join(ctx, room, nil)
}

// Resume joins room asking for every message after since first.
func (c *Client) Resume(ctx context.Context, room string, since int64) (int64, error) {
	return c.join(ctx, room, &since)
}

func (c *Client) join(ctx context.Context, room string, since *int64) (int64, error) {
	conn, err := c.current(ctx)
	if err != nil {
		return 0, err
	}
	ch := make(chan result, 1)
	c.mu.Lock()
	// Registered only once connected: online() would otherwise send the
	// same join a second time.
	if since != nil {
		c.rooms[room] = *since
	}
	c.joins[room] = ch
	c.mu.Unlock()
	c.write(conn, protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: since})
	select {
	case r := <-ch:
		return r.seq, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.joins, room)
		c.mu.Unlock()
		return 0, fmt.Errorf("join %s: %w", room, ctx.Err())
	}
}

// Leave leaves room.
func (c *Client) Leave(ctx context.Context, room string) error {
	conn, err := c.current(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
	c.write(conn, protocol.ClientFrame{Op: protocol.OpLeave, Room: room})
	return nil
}

// Send sends text to room and returns the seq the server acked it with. A
// message in flight when the connection drops is sent again, with the same
// id, after the reconnect.
func (c *Client) Send(ctx context.Context, room, text string) (int64, error) {
	return c.SendID(ctx, room, fmt.Sprintf("%s-%d", c.prefix, c.nextID.Add(1)), text)
}

// SendID is Send with the caller's message id (to retry a send by hand).
func (c *Client) SendID(ctx context.Context, room, id, text string) (int64, error) {
	p := &pending{room: room, text: text, reply: make(chan result, 1)}
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
		p.conn = c.conn
	default:
	}
	conn := p.conn
	c.mu.Unlock()
	if conn != nil {
		c.write(conn, protocol.ClientFrame{Op: protocol.OpSend, Room: room, Text: text, ID: id})
	}
	select {
	case r := <-p.reply:
		if r.err != nil {
			return 0, fmt.Errorf("send %s to %s: %w", id, room, r.err)
		}
		return r.seq, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.sends, id)
		c.mu.Unlock()
		return 0, fmt.Errorf("send %s to %s: %w", id, room, ctx.Err())
	}
}

// Messages delivers each room's messages once, in seq order. It is never
// blocked by a slow reader: messages wait in an unbounded mailbox.
func (c *Client) Messages() <-chan protocol.Message { return c.msgs.out }

// Instance is the server instance of the current connection.
func (c *Client) Instance() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inst
}

// LastSeq is the newest seq seen in room.
func (c *Client) LastSeq(room string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rooms[room]
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

// Done is closed once the client has stopped for good.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the client: a normal close frame, no reconnect.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	close(c.stop)
	c.mu.Unlock()
	c.writeMu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	conn.Close()
	<-c.done
	return nil
}

// fail ends every call still waiting.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.sends {
		delete(c.sends, id)
		p.reply <- result{err: err}
	}
	for room, ch := range c.joins {
		delete(c.joins, room)
		ch <- result{err: err}
	}
	c.msgs.close()
}
