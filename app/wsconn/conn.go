// Package wsconn gives gorilla/websocket server connections that cost little
// while idle and little per batch written. It is the only code that relies on
// how gorilla works inside, not only on its API:
//
//   - Upgrade hands gorilla a hijacked connection whose buffered reader gorilla
//     adopts as its own (it does for a reader of more than 256 bytes when
//     Upgrader.ReadBufferSize is 0), so a connection has one small read buffer
//     and this package can see what gorilla has yet to read. The socket
//     under it leaves Go's poller (sock): gorilla reads and writes through
//     system calls on its descriptor.
//   - Watch reports the peer's next bytes without a goroutine waiting
//     (netpoll), Fill reads them into that buffer, and Buffered shows what
//     gorilla has yet to read. Rest lends the buffer to a pool between reads
//     (gorilla keeps the reader's pointer; its value is swapped): an idle
//     connection holds no read buffer.
//   - SkipControl consumes a ping or pong frame at the head of that buffer
//     as gorilla would, without gorilla then blocking for the next data
//     frame, and Whole tells whether the next message is all buffered, so
//     that a read that must wait for the peer can be given a deadline.
//   - Hold and Release coalesce the frames gorilla writes into one write, and
//     the connection skips the write deadline gorilla sets again before every
//     frame when it has not changed.
//
// Its tests run a real gorilla client and server over loopback and pin the
// gorilla version these assumptions were checked against (version_test.go):
// upgrading gorilla fails a test here before it reaches an instance.
package wsconn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/netpoll"
)

// Conn is a server-side gorilla connection over a wire of this package: use
// its gorilla methods as usual. Buffered, SkipControl and Whole are for the one
// reading goroutine, between messages; Hold and Release for the one writing
// goroutine.
type Conn struct {
	*websocket.Conn
	wire wire
	// in is what gorilla reads through (it keeps its pointer); it reads the
	// buffer of lent, a pooled reader, or none while the connection rests
	// (Rest).
	in   bufio.Reader
	lent *bufio.Reader
}

// Upgrade completes the WebSocket handshake like u.Upgrade. u.ReadBufferSize
// must be 0: the read buffer is this package's (ReadBufferSize bytes), which
// gorilla adopts. Give u a WriteBufferPool so that an idle connection holds no
// write buffer.
func Upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, responseHeader http.Header) (*Conn, error) {
	if u.ReadBufferSize != 0 {
		// A programming error: gorilla would allocate a read buffer of its own
		// and read around this package's.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil, errReadBufferSize
	}
	h := hijacker{ResponseWriter: w}
	ws, err := u.Upgrade(&h, r, responseHeader)
	if err != nil {
		return nil, err
	}
	h.conn.Conn = ws
	return h.conn, nil
}

var errReadBufferSize = errors.New("wsconn: Upgrader.ReadBufferSize must be 0 for gorilla to adopt the connection's read buffer")

// ReadBufferSize is a connection's read buffer: client frames are small,
// larger ones are read in pieces. It must stay above the 256 bytes past which
// gorilla adopts a hijacked reader, and hold a whole control frame (131 bytes
// with its header and masking key) for SkipControl to find one.
const ReadBufferSize = 320

// hijacker hands the upgrader a wire in place of the hijacked connection.
type hijacker struct {
	http.ResponseWriter
	conn *Conn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if rw.Reader.Buffered() > 0 {
		nc.Close()
		return nil, nil, errors.New("client sent data before the handshake completed")
	}
	// Out of Go's poller (sock): the upgrade's response is written through
	// the wire too, and nothing of net's connection is kept.
	if nc, err = detach(nc); err != nil {
		return nil, nil, err
	}
	h.conn = &Conn{wire: wire{Conn: nc}}
	h.conn.lend() // gorilla adopts only a reader of more than 256 bytes
	return &h.conn.wire, bufio.NewReadWriter(&h.conn.in, rw.Writer), nil
}

// readers lend the connections their read buffers while they read: a resting
// connection holds none (320 bytes of an idle connection's 5 KiB).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ReadBufferSize) }}

// resting is what gorilla's reader holds while its connection rests: no
// buffer of its own, and a read fails instead of waiting or panicking. Its
// 16 bytes are shared and never written: errResting reads nothing.
var resting = bufio.NewReaderSize(restingSource{}, 16)

type restingSource struct{}

func (restingSource) Read([]byte) (int, error) { return 0, errResting }

var errResting = errors.New("wsconn: read while the connection rests: call Fill first")

// lend gives gorilla's reader, whose pointer gorilla keeps, a pooled
// buffer: the reader's value is replaced, not the reader.
func (c *Conn) lend() {
	c.lent = readers.Get().(*bufio.Reader)
	c.lent.Reset(&c.wire)
	c.in = *c.lent
}

// Rest gives the read buffer back to a pool while nothing is buffered: an
// idle connection then holds none, and the next Fill borrows one again.
// Call it on the reading goroutine once a read is over, before re-arming
// the watch; until Fill, gorilla's reads fail (errResting). With bytes
// buffered it keeps the buffer.
func (c *Conn) Rest() {
	if c.lent == nil || c.in.Buffered() > 0 {
		return
	}
	c.in = *resting
	c.lent.Reset(nil) // the pool must not keep this connection alive
	readers.Put(c.lent)
	c.lent = nil
}

// Watch has p call ready when the peer's next bytes, or its close, reach the
// socket, with no goroutine waiting: an idle connection holds no stack. The
// watch reports once; re-arm it after reading what is buffered, and stop it
// before closing c. Shutdown makes it report too.
func (c *Conn) Watch(p *netpoll.Poller, ready func()) (*netpoll.Watch, error) {
	var w *netpoll.Watch
	err := c.control(func(fd int) (err error) {
		w, err = p.Watch(fd, ready)
		return err
	})
	return w, err
}

// Shutdown ends the connection both ways without closing its descriptor: a
// read in progress returns, a watch reports, and the descriptor stays c's
// until Close.
func (c *Conn) Shutdown() error {
	return c.control(func(fd int) error { return syscall.Shutdown(fd, syscall.SHUT_RDWR) })
}

func (c *Conn) control(f func(fd int) error) error {
	raw, err := rawConn(c.wire.Conn)
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Fill reads what the socket holds into the read buffer, when it is empty,
// borrowing a buffer if the connection rests. Call it once a watch has
// reported, before SkipControl: the report means bytes, the peer's close or
// an error are waiting, so it does not block, and SkipControl sees what is
// buffered.
func (c *Conn) Fill() error {
	if c.lent == nil {
		c.lend()
	}
	if c.in.Buffered() > 0 {
		return nil
	}
	_, err := c.in.Peek(1)
	return err
}

// Buffered is how many bytes the peer has sent that gorilla has yet to read:
// with none, the next read waits for the peer.
func (c *Conn) Buffered() int { return c.in.Buffered() }

// SkipControl consumes the ping or pong frame at the head of the read
// buffer and calls its handler with the payload, as gorilla's reads would;
// it returns the handler's error. It leaves anything else (a data frame, a
// close, an invalid frame) to gorilla. A ping or pong begun but not whole is
// waited for, for up to wait (then the error is a timeout,
// os.ErrDeadlineExceeded); with wait 0 it is left to gorilla too. Call it
// only between messages. After a control frame gorilla goes on to wait for
// the next data frame, which on an idle connection would hold a deep stack
// for as long as the peer is silent, and would keep a deadline set for the
// control frame running against that silence.
func (c *Conn) SkipControl(wait time.Duration) (bool, error) {
	const fin, masked, maskLen = 0x80, 0x80, 4
	in := &c.in
	if in.Buffered() == 0 {
		return false, nil
	}
	h, _ := in.Peek(1)
	op := h[0] &^ fin
	if h[0]&fin == 0 || (op != websocket.PingMessage && op != websocket.PongMessage) {
		return false, nil
	}
	if err := c.await(2, wait); err != nil || in.Buffered() < 2 {
		return false, err
	}
	h, _ = in.Peek(2)
	n := int(h[1] & 0x7F)
	size := 2 + maskLen + n
	if h[1]&masked == 0 || n > 125 {
		return false, nil
	}
	if err := c.await(size, wait); err != nil || in.Buffered() < size {
		return false, err
	}
	var payload string
	if n > 0 {
		f, _ := in.Peek(size)
		var p [125]byte
		for i := range n {
			p[i] = f[2+maskLen+i] ^ f[2+i%maskLen]
		}
		payload = string(p[:n])
	}
	in.Discard(size)
	if op == websocket.PingMessage {
		return true, c.Conn.PingHandler()(payload)
	}
	return true, c.Conn.PongHandler()(payload)
}

// await reads until n bytes are buffered, for up to wait; with wait 0, or
// n bytes there already, it returns at once.
func (c *Conn) await(n int, wait time.Duration) error {
	if wait <= 0 || c.in.Buffered() >= n {
		return nil
	}
	c.wire.Conn.SetReadDeadline(time.Now().Add(wait))
	defer c.wire.Conn.SetReadDeadline(time.Time{})
	_, err := c.in.Peek(n)
	return err
}

// Whole tells whether the read buffer holds, from its head, a whole frame
// that ends a message (or a whole control frame), so that gorilla reads the
// next message without waiting for the peer. Otherwise a message has begun
// whose rest (its frame's bytes, or further fragments) is still to come,
// and reading it waits for the peer: bound that with SetReadDeadline. Call
// it between messages, after SkipControl.
func (c *Conn) Whole() bool {
	const fin, masked, maskLen = 0x80, 0x80, 4
	in := &c.in
	b := in.Buffered()
	if b < 2 {
		return false
	}
	h, _ := in.Peek(min(b, 14))
	head := 2
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		head += 2
	case 127:
		head += 8
	}
	if h[1]&masked != 0 {
		head += maskLen
	}
	if b < head {
		return false
	}
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
	}
	ends := h[0]&fin != 0 || h[0]&0x0F >= 8 // FIN, or a control frame (whose lack of FIN gorilla refuses)
	return ends && n <= uint64(b-head)
}

// Hold gathers the frames written from now on until Release: a batch then
// reaches the kernel in one write (coalesceLimit bytes at most at a time).
func (c *Conn) Hold() { c.wire.hold() }

// Release writes what Hold gathered.
func (c *Conn) Release() error { return c.wire.release() }

// TryWrite writes frames, whole frames made with AppendText and AppendPing,
// with one system call that does not wait, and reports whether any of it
// went. When the socket took only part, the rest goes first in the next
// Release, which the caller must then call (after Hold): Pending tells. Only
// for the one writing goroutine, never while gorilla writes, between Hold
// and Release, or once Close may have begun (it writes the descriptor
// itself, which Close gives back to the system). No write deadline applies:
// it never waits. Unlike gorilla's writes it takes no goroutine switch to wait
// for a full socket: a fan-out writes many sockets from one goroutine this
// way and leaves only the full ones to a goroutine each.
func (c *Conn) TryWrite(frames []byte) (bool, error) { return c.wire.tryWrite(frames) }

// Pending tells whether the rest of what TryWrite began waits for Release.
func (c *Conn) Pending() bool { return c.wire.pending() }

// AppendText appends a final, unmasked text frame holding payload: a
// server's frame as gorilla writes it without compression (RFC 6455, 5.2).
func AppendText(b, payload []byte) []byte {
	const finText = 0x81
	switch n := len(payload); {
	case n < 126:
		b = append(b, finText, byte(n))
	case n <= 0xFFFF:
		b = append(b, finText, 126, byte(n>>8), byte(n))
	default:
		b = append(b, finText, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}

// AppendPing appends an empty ping frame.
func AppendPing(b []byte) []byte { return append(b, 0x89, 0) }
