package wsconn

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// upgrader is configured as app/server's.
func upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{WriteBufferSize: 1024, WriteBufferPool: &sync.Pool{}}
}

// countingConn counts what reaches the socket under a wire.
type countingConn struct {
	net.Conn
	writes, deadlines atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// SyscallConn lets TryWrite reach the socket; its writes are not counted.
func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

type countingListener struct {
	net.Listener
	conns chan *countingConn
}

func (l countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: nc}
	l.conns <- cc
	return cc, nil
}

// pair is both ends of one upgraded connection over loopback: gorilla's
// client, and this package's server side with the socket under it.
type pair struct {
	client *websocket.Conn
	server *Conn
	raw    *countingConn
}

// dial starts a server upgrading with Upgrade and connects a gorilla client;
// the server's socket is as net made it, which Upgrade takes out of Go's
// poller (sock), and p.raw is nil.
func dial(t *testing.T) pair { t.Helper(); return dialWith(t, false) }

// dialCounting is dial with a counting wrapper around the server's socket,
// one that Upgrade keeps as it is.
func dialCounting(t *testing.T) pair { t.Helper(); return dialWith(t, true) }

func dialWith(t *testing.T, counting bool) pair {
	t.Helper()
	conns := make(chan *Conn, 1)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(upgrader(), w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		conns <- c
	}))
	raws := make(chan *countingConn, 1)
	if counting {
		ts.Listener = countingListener{Listener: ts.Listener, conns: raws}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	var p pair
	select {
	case p.server = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no upgrade")
	}
	t.Cleanup(func() { p.server.Close() })
	if counting {
		p.raw = <-raws
	}
	p.client = client
	return p
}

// await waits until n bytes the client sent are in the server's read buffer,
// unread by gorilla.
func (p pair) await(t *testing.T, n int) {
	t.Helper()
	p.server.wire.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer p.server.wire.Conn.SetReadDeadline(time.Time{})
	if _, err := p.server.in.Peek(n); err != nil {
		t.Fatalf("waiting for %d bytes in the read buffer (%d there): %v", n, p.server.Buffered(), err)
	}
}

// frame is a client frame: masked with a key of its own, as RFC 6455 asks.
func frame(b0 byte, payload string) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, 0x80|byte(n))
	default:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	}
	f = append(f, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}

// setSendBuffer sets the size of c's socket's send buffer.
func setSendBuffer(t *testing.T, c *Conn, n int) {
	t.Helper()
	err := c.control(func(fd int) error { return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, n) })
	if err != nil {
		t.Fatalf("SO_SNDBUF: %v", err)
	}
}
