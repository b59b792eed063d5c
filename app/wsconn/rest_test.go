package wsconn

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// liveHeap is the heap's live bytes once sync.Pool has dropped what it held
// (two collections: the pool's victim cache survives one).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRestingConnectionsHoldNoReadBuffer: a connection that rests gives its
// 320-byte read buffer back, so an idle connection holds none.
func TestRestingConnectionsHoldNoReadBuffer(t *testing.T) {
	const n = 200
	pairs := make([]pair, n)
	for i := range pairs {
		pairs[i] = dial(t)
	}
	lent := liveHeap()
	for _, p := range pairs {
		p.server.Rest()
	}
	rested := liveHeap()
	freed := int64(lent) - int64(rested)
	t.Logf("%d connections resting freed %d bytes, %d each", n, freed, freed/n)
	if freed < n*ReadBufferSize*3/4 {
		t.Fatalf("%d connections resting freed %d bytes, want about %d: their read buffers are still held", n, freed, n*ReadBufferSize)
	}
	runtime.KeepAlive(pairs)
}

// TestFillAfterRestReadsEveryFrame: after Rest, Fill borrows a buffer again
// and gorilla reads what came meanwhile, a frame larger than the buffer
// included; Rest keeps a buffer that still holds a frame.
func TestFillAfterRestReadsEveryFrame(t *testing.T) {
	p := dial(t)
	p.server.Rest()
	big := strings.Repeat("abcdefghij", 100) // past the 320-byte buffer: read in pieces
	one, two := frame(0x81, "one"), frame(0x81, "two")
	if _, err := p.client.NetConn().Write(append(append(one, two...), frame(0x81, big)...)); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Fill(); err != nil {
		t.Fatal(err)
	}
	p.await(t, len(one)+len(two))
	read := func(want string) {
		t.Helper()
		if kind, data, err := p.server.ReadMessage(); err != nil || kind != websocket.TextMessage || string(data) != want {
			t.Fatalf("read: %d %d bytes %v, want text of %d bytes", kind, len(data), err, len(want))
		}
	}
	read("one")
	p.server.Rest() // the second frame is buffered: the buffer stays
	if p.server.Buffered() == 0 {
		t.Fatal("Rest dropped buffered bytes")
	}
	read("two")
	read(big)
	p.server.Rest()
	if err := p.client.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Fill(); err != nil {
		t.Fatal(err)
	}
	read("after")
}

// TestReadWhileRestingFails: a read without Fill fails instead of waiting
// on, or panicking over, a reader without a buffer.
func TestReadWhileRestingFails(t *testing.T) {
	p := dial(t)
	p.server.Rest()
	if err := p.client.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.server.ReadMessage(); !errors.Is(err, errResting) {
		t.Fatalf("read while resting: %v, want errResting", err)
	}
}
