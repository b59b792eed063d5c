package wsconn

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestTryWriteFramesReadAsGorillaWritesThem: the frames AppendText and
// AppendPing make, at every length encoding's edges, reach a gorilla client
// as the messages and pings they hold, in order with gorilla's own frames.
func TestTryWriteFramesReadAsGorillaWritesThem(t *testing.T) {
	p := dial(t)
	pings := make(chan struct{}, 10)
	p.client.SetPingHandler(func(string) error { pings <- struct{}{}; return nil })
	for _, n := range []int{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 300 << 10} {
		payload := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		frames := AppendText(AppendPing(nil), payload)
		wrote, err := p.server.TryWrite(frames)
		if err != nil || !wrote {
			t.Fatalf("%d bytes: TryWrite = %v, %v; want it written", n, wrote, err)
		}
		if p.server.Pending() {
			// A large frame may not fit the socket at once: Release sends the rest.
			go p.server.Release()
		}
		readMessage(t, p.client, payload)
		select {
		case <-pings:
		default:
			t.Fatalf("%d bytes: the ping before the message was not seen", n)
		}
		// gorilla's own frames follow on the same socket.
		if err := p.server.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
			t.Fatal(err)
		}
		readMessage(t, p.client, []byte("after"))
	}
}

// TestTryWriteLeavesTheRestToRelease: against a client that does not read,
// TryWrite never waits. It writes what the socket takes, keeps the rest of
// the frame for Release, then writes nothing while that rest waits or the
// socket is full; gorilla's next frame goes out after the rest. Once the
// client reads, every frame arrives whole and in order.
func TestTryWriteLeavesTheRestToRelease(t *testing.T) {
	p := dial(t)
	setSendBuffer(t, p.server, 16<<10)
	// A fixed receive buffer: reading 4 MiB would otherwise let the kernel
	// grow it up to tcp_rmem's maximum (32 MiB here), and the full socket
	// below would take millions of bytes before it refused one.
	p.client.NetConn().(*net.TCPConn).SetReadBuffer(16 << 10)
	big := bytes.Repeat([]byte("x"), 4<<20) // more than loopback's buffers hold
	small := []byte("small")

	began := time.Now()
	wrote, err := p.server.TryWrite(AppendText(nil, big))
	if err != nil || !wrote {
		t.Fatalf("TryWrite of 4 MiB = %v, %v; want part of it written", wrote, err)
	}
	if !p.server.Pending() {
		t.Fatal("4 MiB went at once: the test needs a socket that takes less")
	}
	if wrote, err = p.server.TryWrite(AppendText(nil, small)); wrote || err != nil {
		t.Fatalf("TryWrite with a rest waiting = %v, %v; want nothing written", wrote, err)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("TryWrite waited %v for the socket", d)
	}
	released := make(chan error, 1)
	go func() {
		p.server.Hold()
		if err := p.server.WriteMessage(websocket.TextMessage, small); err != nil {
			released <- err
			return
		}
		released <- p.server.Release()
	}()
	readMessage(t, p.client, big)
	readMessage(t, p.client, small)
	if err := <-released; err != nil {
		t.Fatalf("Release: %v", err)
	}
	if p.server.Pending() {
		t.Fatal("a rest still waits after Release")
	}

	// A full socket takes nothing, and TryWrite says so at once. One byte at
	// a time, so that no write goes in part (the client never reads them).
	began = time.Now()
	for n := 0; ; n++ {
		wrote, err := p.server.TryWrite([]byte{0x89})
		if err != nil {
			t.Fatal(err)
		}
		if !wrote {
			break
		}
		if n > 1e6 {
			t.Fatal("a million bytes went one by one into a socket nobody reads")
		}
	}
	if p.server.Pending() {
		t.Fatal("a refused write left a rest")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("filling the socket took %v", d)
	}
}

func readMessage(t *testing.T, c *websocket.Conn, want []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if kind != websocket.TextMessage || !bytes.Equal(got, want) {
		t.Fatalf("got a %d-byte message of kind %d, want %d bytes of text", len(got), kind, len(want))
	}
}

// TestTryWriteIgnoresTheWriteDeadline: TryWrite never waits, so no deadline
// bounds it; one that has passed (set for gorilla's blocking writes) does
// not stop it, and gorilla's writes still keep theirs.
func TestTryWriteIgnoresTheWriteDeadline(t *testing.T) {
	p := dial(t)
	past := time.Now().Add(-time.Second)
	p.server.NetConn().SetWriteDeadline(past) // the socket's, as a blocking write leaves it
	wrote, err := p.server.TryWrite(AppendText(nil, []byte("late")))
	if err != nil || !wrote {
		t.Fatalf("TryWrite past the write deadline = %v, %v; want it written", wrote, err)
	}
	readMessage(t, p.client, []byte("late"))
	p.server.SetWriteDeadline(past)
	if err := p.server.WriteMessage(websocket.TextMessage, []byte("blocked")); err == nil {
		t.Fatal("gorilla wrote past its deadline")
	}
}
