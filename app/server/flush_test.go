package server_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// TestAMemberThatPausesReadingGetsEveryMessageInOrder: a member with a
// small receive buffer stops reading while 6 MB are sent to its room, more
// than loopback's socket buffers hold. Its
// socket fills in the middle of a frame, so the flushers hand it to a
// writer goroutine of its own and go on. When it reads again it gets every
// message whole, in seq order, and the members that kept reading were
// never held up.
func TestAMemberThatPausesReadingGetsEveryMessageInOrder(t *testing.T) {
	c := ownChat(t, "chat-pause", "SEND_QUEUE=1024", "MAX_MESSAGE_BYTES=65536", "RATE_LIMIT=1000", "RATE_BURST=1000")
	r := chattest.Room()
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		nc, err := net.Dial(network, addr)
		if err == nil {
			err = nc.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return nc, err
	}}
	paused, _, err := d.Dial(c.WSURL()+"?token="+token(t, "paused", time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	if f := chattest.Next(t, paused); f.Op != protocol.OpWelcome {
		t.Fatalf("first frame %+v, want welcome", f)
	}
	paused.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: r})
	joined := chattest.Next(t, paused)
	if joined.Op != protocol.OpJoined {
		t.Fatalf("got %+v, want joined", joined)
	}
	reading := dial(t, c, "reading")
	chattest.Join(t, reading, r)
	sender := dial(t, c, "sender")
	chattest.Join(t, sender, r)

	// Each message fits one flusher write (maxFlush), so the socket fills
	// in the middle of one.
	const n = 500
	text := strings.Repeat("z", 12000)
	for range n {
		chattest.Send(t, sender, r, text)
	}
	if got := chattest.Receive(t, reading, n, 30*time.Second); len(got) != n {
		t.Fatalf("the member that kept reading got %d of %d while the other paused", len(got), n)
	}
	want := joined.Seq + 1
	for want <= joined.Seq+n {
		f := chattest.Next(t, paused)
		if f.Op != protocol.OpMessage {
			continue // the sender's own frames are not the paused member's
		}
		if f.Seq != want || len(f.Text) != len(text) {
			t.Fatalf("after the pause: seq %d with %d bytes of text, want seq %d with %d", f.Seq, len(f.Text), want, len(text))
		}
		want++
	}
}
