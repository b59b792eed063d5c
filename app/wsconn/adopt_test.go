package wsconn

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestGorillaAdoptsReadBuffer: gorilla reads the client's frames through this
// package's buffer, one frame at a time, and through no buffer of its own.
// Were it reading the socket itself, the bytes peeked here would never reach
// it and its read would time out; were it reading through a buffer of its
// own, its first read would take every frame out of this one.
func TestGorillaAdoptsReadBuffer(t *testing.T) {
	p := dial(t)
	one, two := frame(0x81, "one"), frame(0x81, "second")
	if _, err := p.client.NetConn().Write(append(one, two...)); err != nil {
		t.Fatal(err)
	}
	p.await(t, len(one)+len(two))
	if got := p.server.Buffered(); got != len(one)+len(two) {
		t.Fatalf("Buffered() = %d before gorilla read, want %d: both frames", got, len(one)+len(two))
	}
	p.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	for i, want := range []string{"one", "second"} {
		kind, data, err := p.server.ReadMessage()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("gorilla's read %d timed out with the frames in this package's buffer: it does not read through the hijacked reader (Upgrader.Upgrade no longer adopts it?)", i+1)
		}
		if err != nil || kind != websocket.TextMessage || string(data) != want {
			t.Fatalf("read %d: %d %q %v, want text %q", i+1, kind, data, err, want)
		}
		if left, want := p.server.Buffered(), len(two)*(1-i); left != want {
			t.Fatalf("after gorilla's read %d, Buffered() = %d, want %d: gorilla reads through a buffer of its own", i+1, left, want)
		}
	}
	// The reader gorilla took is the 320-byte one: a frame past it arrives in pieces.
	big := make([]byte, 1000)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	if err := p.client.WriteMessage(websocket.TextMessage, big); err != nil {
		t.Fatal(err)
	}
	p.await(t, ReadBufferSize)
	if _, data, err := p.server.ReadMessage(); err != nil || string(data) != string(big) {
		t.Fatalf("a frame larger than the read buffer: %d bytes, %v", len(data), err)
	}
}

// TestUpgradeRefusesReadBufferSize: with a ReadBufferSize gorilla would read
// around this package's buffer.
func TestUpgradeRefusesReadBufferSize(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, err := Upgrade(&websocket.Upgrader{ReadBufferSize: 1024}, w, r, nil); !errors.Is(err, errReadBufferSize) {
		t.Fatalf("err = %v, want errReadBufferSize", err)
	}
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
}

// hijackable is a ResponseWriter whose Hijack returns one end of a pipe and
// a reader and writer sized as net/http's.
type hijackable struct {
	header http.Header
	conn   net.Conn
	rw     *bufio.ReadWriter
}

func (h *hijackable) Header() http.Header         { return h.header }
func (h *hijackable) Write(p []byte) (int, error) { return len(p), nil }
func (h *hijackable) WriteHeader(int)             {}
func (h *hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, h.rw, nil
}

// TestUpgradeAllocatesNoReadBuffer: what an upgrade allocates (1.2 KiB with
// the version checked) stays under 2 KiB, well clear of the 4 KiB read buffer
// gorilla allocates when it does not adopt the hijacked reader.
func TestUpgradeAllocatesNoReadBuffer(t *testing.T) {
	const n = 50
	ws, rs := make([]*hijackable, n), make([]*http.Request, n)
	for i := range n {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		go func() { // reads the 101 response, allocating nothing
			var b [512]byte
			for {
				if _, err := client.Read(b[:]); err != nil {
					return
				}
			}
		}()
		ws[i] = &hijackable{header: http.Header{}, conn: server,
			rw: bufio.NewReadWriter(bufio.NewReaderSize(server, 4096), bufio.NewWriterSize(server, 4096))}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-Websocket-Version", "13")
		r.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		rs[i] = r
	}
	u := upgrader()
	if _, err := Upgrade(u, ws[0], rs[0], nil); err != nil { // warm up
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the readers start
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i < n; i++ {
		if _, err := Upgrade(u, ws[i], rs[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / (n - 1)
	t.Logf("an upgrade allocates %d bytes", per)
	if per >= 2048 {
		t.Fatalf("an upgrade allocates %d bytes, 1.2 KiB with the gorilla version checked: gorilla allocated a read buffer of its own (4 KiB by default) instead of adopting the hijacked one, or a connection now costs more", per)
	}
}
