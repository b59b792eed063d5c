package load

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/app/auth"
)

// setupTimeout bounds a connection's handshake and its join.
const setupTimeout = 30 * time.Second

// conn is one client connection and what it saw of its room. Its reader (a
// poller, or a goroutine of its own) owns every field but w, wmu and closed.
type conn struct {
	k int
	r *runner
	m member

	src    io.Reader  // the socket, read only by c's reader
	w      io.Writer  // the socket
	wmu    sync.Mutex // a frame at a time: publisher and reader both write
	shut   func() error
	closed atomic.Bool // closed by us at the end

	state   connState
	pending []byte     // a frame begun but not wholly read
	message []byte     // a fragmented message so far
	joined  chan error // the outcome of the join, once
	events  []event    // scratch for the frame being read
}

type connState int

const (
	awaitWelcome connState = iota
	awaitJoined
	open
	over
)

// dial opens connection k, upgrades it and joins its room.
func (r *runner) dial(ctx context.Context, u *url.URL, k int, p *poller) (*conn, error) {
	token := r.o.Token
	if token == "" {
		var err error
		if token, err = auth.Mint([]byte(r.o.Secret), fmt.Sprintf("load-%d", k), 24*time.Hour); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	d := net.Dialer{Timeout: setupTimeout}
	if r.o.Spread {
		d.LocalAddr = &net.TCPAddr{IP: source(k)}
	}
	nc, err := d.DialContext(ctx, "tcp", hostPort(u))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", unwrapNet(err))
	}
	if u.Scheme == "wss" {
		nc = tls.Client(nc, &tls.Config{ServerName: u.Hostname(), RootCAs: r.roots})
	}
	_ = nc.SetDeadline(time.Now().Add(setupTimeout))
	rest, err := handshake(nc, u, token)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	if hello := r.d.greeting(token); hello != nil {
		if _, err := nc.Write(appendFrame(nil, opText, hello)); err != nil {
			nc.Close()
			return nil, fmt.Errorf("connect: %w", unwrapNet(err))
		}
	}
	c := &conn{k: k, r: r, m: member{room: r.o.room(k)}, joined: make(chan error, 1)}
	if err := r.attach(c, nc, rest, p); err != nil {
		nc.Close()
		if c.shut != nil {
			c.shut()
		}
		return nil, err
	}
	select {
	case err = <-c.joined:
	case <-time.After(setupTimeout):
		err = fmt.Errorf("join %s: no reply within %s", c.m.room, setupTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		// The reader may still hold c: it is closed with the rest at the end.
		c.closed.Store(true)
		return c, err
	}
	r.mu.Lock()
	r.rep.Connect.Time.Record(time.Since(began))
	r.mu.Unlock()
	return c, nil
}

// attach hands c's socket to its reader: a plain TCP connection to the
// poller, leaving Go's own poller; anything else (TLS, or no poller) to a
// goroutine of its own.
func (r *runner) attach(c *conn, nc net.Conn, rest []byte, p *poller) error {
	if tc, ok := nc.(*net.TCPConn); ok && p != nil {
		fd, err := detach(tc)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		c.src, c.w, c.shut = fd, fd, fd.Close
		if c.read(rest, time.Now()) {
			if err := p.add(c, fd); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
		}
		return nil
	}
	c.src, c.w, c.shut = nc, nc, nc.Close
	r.readers.Add(1)
	go func() {
		defer r.readers.Done()
		var buf []byte
		for alive := c.read(rest, time.Now()); alive; {
			buf, alive = c.receive(buf)
		}
	}()
	return nil
}

// receive reads c's socket once into buf, after what is pending, and
// handles what came; buf is the reader's scratch, returned grown if it had
// to be. It is false once c is over.
func (c *conn) receive(buf []byte) ([]byte, bool) {
	b := append(buf[:0], c.pending...)
	if cap(b)-len(b) < 4<<10 {
		b = append(b, make([]byte, 16<<10)...)[:len(b)]
	}
	n, err := c.src.Read(b[len(b):cap(b)])
	switch {
	case n > 0:
		return b, c.read(b[:len(b)+n], time.Now())
	case err == nil: // nothing to read yet
		return b, true
	default:
		c.end("reset", err)
		return b, false
	}
}

// read handles the bytes just read, pending first: each whole frame, the
// rest kept in pending. It is false once the connection is over.
func (c *conn) read(b []byte, now time.Time) bool {
	for {
		fin, op, payload, n, err := nextFrame(b)
		if err != nil {
			c.end("bad frame", err)
			return false
		}
		if n == 0 {
			break
		}
		b = b[n:]
		if !c.frame(fin, op, payload, now) {
			return false
		}
	}
	c.pending = append(c.pending[:0], b...)
	return true
}

func (c *conn) frame(fin bool, op byte, payload []byte, now time.Time) bool {
	switch op {
	case opPing:
		_ = c.send(opPong, payload) // a dead socket shows on the next read
	case opClose:
		code := strconv.Itoa(1005) // RFC 6455 §7.1.5: no status code
		if len(payload) >= 2 {
			code = strconv.Itoa(int(binary.BigEndian.Uint16(payload)))
			payload = payload[:2]
		}
		_ = c.send(opClose, payload)
		c.end(code, nil)
		return false
	case opText, opContinuation:
		if op == opContinuation || !fin {
			c.message = append(c.message, payload...)
			if !fin {
				return true
			}
			payload, c.message = c.message, nil
		}
		return c.text(payload, now)
	}
	return true
}

// text moves c through the greeting and the join, then counts what its
// room sends.
func (c *conn) text(data []byte, now time.Time) bool {
	if c.state == open {
		c.r.received(c, data, now)
		return true
	}
	reply, joined, seq, err := c.r.d.setup(c.state, data, c.m.room)
	if err == nil && reply != nil {
		err = c.send(opText, reply)
	}
	if err != nil {
		c.fail(err)
		return false
	}
	if !joined {
		c.state = awaitJoined
		return true
	}
	c.m.joined, c.m.last = seq, seq
	c.state = open
	c.r.open.Add(1)
	c.joined <- nil
	return true
}

func (c *conn) fail(err error) {
	c.state = over
	c.joined <- err
}

// end is the end of c's stream: code is the server's close code, or why
// there was none.
func (c *conn) end(code string, err error) {
	switch c.state {
	case awaitWelcome, awaitJoined:
		c.fail(fmt.Errorf("connection ended before the join (%s): %w", code, cmpErr(err)))
	case open:
		c.state = over
		c.r.open.Add(-1)
		if !c.closed.Load() {
			c.r.mu.Lock()
			c.r.rep.Disconnects[code]++
			c.r.mu.Unlock()
		}
	}
}

// send writes one frame whole.
func (c *conn) send(op byte, payload []byte) error {
	frame := appendFrame(make([]byte, 0, len(payload)+14), op, payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.w.Write(frame)
	return err
}

func cmpErr(err error) error {
	if err == nil {
		return errors.New("closed")
	}
	return unwrapNet(err)
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "wss" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}
