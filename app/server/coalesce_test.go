package server

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/switchboard-dev/switchboard/app/chattest"
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
	client, _, err := chattest.ReadCounting(reads).Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s := <-sessions
	t.Cleanup(func() { s.close(protocol.CloseGoingAway, "test over") })
	reads.Store(0) // the handshake's
	return &coalescing{srv: srv, s: s, client: client, reads: reads}
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

// TestAConnectionThatIsNotHotIsWrittenAtOnce: frames that do not come
// twice in a row less than a window apart, as most members of most rooms
// receive them, are never deferred: two frames right after one another,
// every three windows; and a stream a little
// sparser than the window (as 50 msg/s against 10 ms), whose next frame
// would not share the write.
func TestAConnectionThatIsNotHotIsWrittenAtOnce(t *testing.T) {
	const window = 20 * time.Millisecond
	for _, tc := range []struct {
		name  string
		every time.Duration // between bursts
		burst int           // frames right after one another, each read before the next
	}{
		{"pairs three windows apart", 3 * window, 2},
		{"single frames one and a half windows apart", 3 * window / 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoalescing(t, window)
			pace := time.NewTicker(tc.every)
			defer pace.Stop()
			for n := 0; n < 20; n += tc.burst {
				<-pace.C
				for i := range tc.burst {
					c.deliver(t, n+i)
					c.next(t, n+i)
				}
			}
			if d := c.deferred(); d != 0 {
				t.Errorf("%v writes deferred on a connection that receives %d frames every %v", d, tc.burst, tc.every)
			}
		})
	}
}

// deferredNow waits until the session's flush is deferred: a frame may
// come while the flusher that wrote the last one has not yet handed the
// session back, and that flusher defers it, just after.
func (c *coalescing) deferredNow(t *testing.T, what string) {
	t.Helper()
	retry.DoWithRetry(t, what+" deferred", 40, 25*time.Millisecond, func() (string, error) {
		if !c.isDeferred() {
			return "", fmt.Errorf("%s of a hot connection was not deferred (%v deferrals counted)", what, c.deferred())
		}
		return "", nil
	})
}

func (c *coalescing) isDeferred() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.wait&waitLine != 0
}

// TestAFrameThatWouldWaitInVainEndsTheDeferral: a frame that arrives at a
// deferred connection early in the window joins the wait; one that comes
// so late that the next, as far apart, would come past the window has both
// written at once, rather than when the window ends (or, if the timer wins
// the race, the first alone at the end of the window and the second in a
// write of its own).
func TestAFrameThatWouldWaitInVainEndsTheDeferral(t *testing.T) {
	const window = 2 * time.Second
	c := newCoalescing(t, window)
	for n := range 2 { // a burst: the second came right after the first
		c.deliver(t, n)
	}
	c.next(t, 0)
	c.next(t, 1)
	c.deliver(t, 2) // two short gaps in a row: hot
	c.deferredNow(t, "the third frame")
	c.deliver(t, 3)
	if !c.isDeferred() {
		t.Fatal("a frame right after the deferred one ended the deferral: the window had just begun")
	}
	time.Sleep(window * 6 / 10) // the stream's pace: the next frame would come past the window
	c.deliver(t, 4)
	if c.isDeferred() {
		t.Error("a frame 0.6 windows into the deferral, after a gap as long, left the session deferred until the window ends")
	}
	for n := 2; n < 5; n++ {
		c.next(t, n)
	}
	if d := c.deferred(); d != 1 {
		t.Errorf("%v deferrals counted, want 1", d)
	}
}

// TestAClosingHotConnectionIsWrittenAtOnce: with a window of a minute, a
// hot connection's deferred frames go out as soon as the session closes
// (a drain, a slow consumer, the client gone), followed by the close frame.
func TestAClosingHotConnectionIsWrittenAtOnce(t *testing.T) {
	c := newCoalescing(t, time.Minute)
	for n := range 2 {
		c.deliver(t, n)
	}
	c.next(t, 0)
	c.next(t, 1)
	c.deliver(t, 2) // two short gaps in a row: hot
	c.deferredNow(t, "the third frame")
	c.deliver(t, 3)
	c.s.close(protocol.CloseGoingAway, "server going away")
	c.next(t, 2)
	c.next(t, 3)
	_, _, err := c.client.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CloseGoingAway {
		t.Fatalf("after the deferred frames: %v, want the close frame %d", err, protocol.CloseGoingAway)
	}
	// Handed back when its window ends, the closed session is not flushed
	// twice: the flushers' line holds it, no longer deferred.
	if c.s.undefer() {
		t.Error("the closed session is still marked deferred")
	}
}

// TestCatchUpPagesAreNeverDeferred: a resume's pages come one after
// another, each once the last was taken (Drained), so a page deferred by
// the window would share its write with nothing and slow the resume by a
// window a page: each is written at once, even after a hot stream.
func TestCatchUpPagesAreNeverDeferred(t *testing.T) {
	c := newCoalescing(t, time.Minute)
	for n := range 2 { // two short gaps: the next live frame would be deferred
		c.deliver(t, n)
	}
	c.next(t, 0)
	c.next(t, 1)
	for page := range 4 {
		first := 2 + 2*page
		ds := []*protocol.Delivery{
			{Frame: []byte(`{"n":` + strconv.Itoa(first) + `}`)},
			{Frame: []byte(`{"n":` + strconv.Itoa(first+1) + `}`)},
		}
		if !c.s.Catchup(ds) {
			t.Fatalf("the session refused page %d", page)
		}
		c.next(t, first) // within the read deadline, far below the window
		c.next(t, first+1)
		if err := c.s.Drained(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := c.deferred(); d != 0 {
		t.Errorf("%v catch-up pages deferred", d)
	}
}

// own is the client's own message, seq 7 of room r, as its frame n.
func own(n int) *protocol.Delivery {
	return &protocol.Delivery{Room: "r", Seq: 7, Frame: []byte(`{"n":` + strconv.Itoa(n) + `}`)}
}

// ack is the answer to the client's send, as its frame n.
func ack(n int) []byte { return []byte(`{"n":` + strconv.Itoa(n) + `}`) }

// TestASendersAckAndItsOwnMessageShareAWrite: the room's fan-out brings a
// sender its own message about when Redis's answer brings the ack, in
// either order; whichever comes first waits for the other (the window is
// a minute, so no timer ends the wait), and the two go out in one write.
// Without the wait a sender takes two writes a message.
func TestASendersAckAndItsOwnMessageShareAWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  func(c *coalescing)
		second func(c *coalescing)
	}{
		{"its message first", func(c *coalescing) { c.s.Deliver(own(0)) }, func(c *coalescing) { c.s.answer(ack(1), "r", 7) }},
		{"the ack first", func(c *coalescing) { c.s.answer(ack(0), "r", 7) }, func(c *coalescing) { c.s.Deliver(own(1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoalescing(t, time.Minute)
			c.s.awaitAnswer()
			tc.first(c)
			c.deferredNow(t, "the first frame")
			tc.second(c)
			c.next(t, 0)
			c.next(t, 1)
			if reads := c.reads.Load(); reads != 1 {
				t.Errorf("the ack and the message took %d socket reads: not one write", reads)
			}
		})
	}
}

// TestAnAnswerIsNeverWaitedForLongerThanTheWindow: the waits for the ack
// and for the message are bounded by the window (Redis slow to answer, a
// message that does not come: the client left the room meanwhile), and an
// answer that brings no message of its own (a refusal, a duplicate's ack)
// goes at once, with what waited for it.
func TestAnAnswerIsNeverWaitedForLongerThanTheWindow(t *testing.T) {
	const window = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		window time.Duration
		queue  func(c *coalescing)
		frames int
	}{
		{"a frame while Redis does not answer", window, func(c *coalescing) { c.s.Deliver(own(0)) }, 1},
		{"an ack whose message does not come", window, func(c *coalescing) { c.s.answer(ack(0), "r", 7) }, 1},
		{"a refusal, with the frame that waited for it", time.Minute, func(c *coalescing) {
			c.s.Deliver(own(0))
			c.s.answer(ack(1), "", 0)
		}, 2},
		{"an ack whose message is queued already", time.Minute, func(c *coalescing) {
			c.s.Deliver(own(0))
			c.s.answer(ack(1), "r", 7)
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCoalescing(t, tc.window)
			c.s.awaitAnswer()
			start := time.Now()
			tc.queue(c)
			for n := range tc.frames {
				c.next(t, n) // within 10 s: far less than a minute
			}
			if took := time.Since(start); tc.window == window && took > window+2*time.Second {
				t.Errorf("written after %v, with a window of %v", took, window)
			}
		})
	}
}
