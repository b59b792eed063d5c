package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// coalescing is one session of a server with WRITE_COALESCE window, and
// its client over loopback TCP, whose socket reads are counted.
type coalescing struct {
	srv    *Server
	s      *session
	client *websocket.Conn
	reads  *atomic.Int64 // socket reads that returned bytes
}

func newCoalescing(t *testing.T, window time.Duration) *coalescing {
	t.Helper()
	cfg := config.Defaults()
	cfg.WriteCoalesce = window
	srv, err := New(cfg, nil, nil, nil, metrics.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sessions := make(chan *session, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := srv.upgrade(w, r)
		if err != nil {
			return
		}
		sessions <- newSession(srv, conn, auth.Claims{User: "hot", Expires: time.Now().Add(time.Hour)})
	}))
	t.Cleanup(ts.Close)
	reads := new(atomic.Int64)
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		nc, err := net.Dial(network, addr)
		return countedConn{nc, reads}, err
	}}
	client, _, err := d.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s := <-sessions
	t.Cleanup(func() { s.close(protocol.CloseGoingAway, "test over") })
	reads.Store(0) // the handshake's
	return &coalescing{srv: srv, s: s, client: client, reads: reads}
}

type countedConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// deliver queues frame n ({"n":N}) for the client.
func (c *coalescing) deliver(t *testing.T, n int) {
	t.Helper()
	if !c.s.Deliver(&protocol.Delivery{Frame: []byte(`{"n":` + strconv.Itoa(n) + `}`)}) {
		t.Fatalf("the session refused frame %d", n)
	}
}

// next reads the client's next frame and checks it is frame n.
func (c *coalescing) next(t *testing.T, n int) {
	t.Helper()
	if err := c.read(n); err != nil {
		t.Fatal(err)
	}
}

func (c *coalescing) read(n int) error {
	c.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.client.ReadMessage()
	if err != nil {
		return fmt.Errorf("frame %d: %w", n, err)
	}
	if want := `{"n":` + strconv.Itoa(n) + `}`; string(data) != want {
		return fmt.Errorf("got %s, want %s: out of order", data, want)
	}
	return nil
}

func (c *coalescing) deferred() float64 { return testutil.ToFloat64(c.srv.m.WritesDeferred) }

// TestAHotConnectionsFramesShareWritesInOrder: frames 1 ms apart to one
// connection, with a 20 ms window, reach the client in order, in far fewer
// socket reads than frames (each read drains what the writes put in the
// socket, so there were fewer writes still), and none waits much longer
// than the window. Without the deferral (WRITE_COALESCE=0) each frame is
// a write of its own and a client that keeps reading reads about one
// frame at a time.
func TestAHotConnectionsFramesShareWritesInOrder(t *testing.T) {
	const window, frames = 20 * time.Millisecond, 600
	c := newCoalescing(t, window)
	var sentAt [frames]atomic.Int64 // when each frame was delivered, as ns since epoch
	type result struct {
		worst time.Duration
		err   error
	}
	read := make(chan result, 1)
	go func() {
		var r result
		defer func() { read <- r }()
		for n := range frames {
			if r.err = c.read(n); r.err != nil {
				return
			}
			r.worst = max(r.worst, time.Since(epoch)-time.Duration(sentAt[n].Load()))
		}
	}()
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	for n := range frames {
		<-pace.C
		sentAt[n].Store(int64(time.Since(epoch)))
		c.deliver(t, n)
	}
	// Generous: the machine is shared; a deferral that is never handed
	// back, or handed back again and again, waits for the stream's end.
	r := <-read
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.worst > window+500*time.Millisecond {
		t.Errorf("a frame waited %v, with a window of %v", r.worst, window)
	}
	if reads := c.reads.Load(); reads > frames/3 {
		t.Errorf("%d frames took %d socket reads: their writes were not coalesced", frames, reads)
	}
	if c.deferred() == 0 {
		t.Error("chat_writes_deferred_total stayed 0 on a hot connection")
	}
}

// TestAConnectionThatIsNotHotIsWrittenAtOnce: two frames back to back (a
// sender's ack, then its own message) every three windows, as most
// members of most rooms receive them: no write is ever deferred.
func TestAConnectionThatIsNotHotIsWrittenAtOnce(t *testing.T) {
	const window = 20 * time.Millisecond
	c := newCoalescing(t, window)
	pace := time.NewTicker(3 * window)
	defer pace.Stop()
	for n := 0; n < 20; n += 2 {
		<-pace.C
		c.deliver(t, n)
		c.deliver(t, n+1)
		c.next(t, n)
		c.next(t, n+1)
	}
	if d := c.deferred(); d != 0 {
		t.Errorf("%v writes deferred on a connection whose frames come in pairs %v apart", d, 3*window)
	}
}

// TestAClosingHotConnectionIsWrittenAtOnce: with a window of an hour, a
// hot connection's deferred frame goes out as soon as the session closes
// (a drain, a slow consumer, the client gone), followed by the close frame.
func TestAClosingHotConnectionIsWrittenAtOnce(t *testing.T) {
	c := newCoalescing(t, time.Hour)
	for n := range 2 { // two writes less than a window apart: hot
		c.deliver(t, n)
		c.next(t, n)
	}
	c.deliver(t, 2)
	// The frame may have come while the flusher that wrote frame 1 had not
	// yet taken the session back: that flusher defers it, just after.
	retry.DoWithRetry(t, "the third frame deferred", 40, 25*time.Millisecond, func() (string, error) {
		c.s.mu.Lock()
		deferred := c.s.deferred
		c.s.mu.Unlock()
		if !deferred || c.deferred() != 1 {
			return "", fmt.Errorf("the third frame of a hot connection was not deferred (deferred %v, counted %v)", deferred, c.deferred())
		}
		return "", nil
	})
	c.s.close(protocol.CloseGoingAway, "server going away")
	c.next(t, 2)
	_, _, err := c.client.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CloseGoingAway {
		t.Fatalf("after the deferred frame: %v, want the close frame %d", err, protocol.CloseGoingAway)
	}
	// Handed back when its window ends, the closed session is not flushed
	// twice: the flushers' line holds it, no longer deferred.
	if c.s.undefer() {
		t.Error("the closed session is still marked deferred")
	}
}
