package wsconn

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// Whole is true exactly when gorilla's next read finds a message all in the
// read buffer: the session sets a read deadline (FRAME_TIMEOUT) otherwise.
func TestWhole(t *testing.T) {
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	text := frame(0x81, "hello")
	mid := frame(0x81, strings.Repeat("m", 200)) // a 16-bit length
	huge := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}
	for _, c := range []struct {
		name  string
		sent  []byte
		whole bool
	}{
		{"a whole text frame", text, true},
		{"a whole text frame and part of the next", cat(text, text[:3]), true},
		{"one byte of a frame", text[:1], false},
		{"a header without its mask key", text[:4], false},
		{"part of the payload", text[:len(text)-1], false},
		{"a whole frame of 200 bytes", mid, true},
		{"200 bytes: the extended length cut", mid[:3], false},
		{"200 bytes: part of the payload", mid[:100], false},
		{"a whole fragment that is not the last", frame(0x01, "he"), false},
		{"a frame larger than the read buffer", frame(0x81, strings.Repeat("x", 400))[:ReadBufferSize], false},
		{"a 64-bit length, header whole", huge, false},
		{"a whole close frame", frame(0x88, "\x03\xe8"), true},
		{"a whole ping", frame(0x89, "hi"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := dial(t)
			write(t, p, c.sent)
			p.await(t, len(c.sent))
			if got := p.server.Whole(); got != c.whole {
				t.Fatalf("Whole() = %v with %d bytes buffered, want %v", got, p.server.Buffered(), c.whole)
			}
		})
	}
}

// A ping or pong begun is waited for, up to the wait given: one completed
// in time is skipped and handled; one that does not come fails with a
// timeout, after about the wait, and leaves no deadline behind.
func TestSkipControlWaitsForABegunControlFrame(t *testing.T) {
	for _, op := range []byte{0x89, 0x8A} {
		f := frame(op, "abc")
		for _, cut := range []int{1, 2, 5, len(f) - 1} {
			p := dial(t)
			r := record(p, false)
			write(t, p, f[:cut])
			p.await(t, cut)
			go func() {
				time.Sleep(100 * time.Millisecond)
				p.client.NetConn().Write(f[cut:])
			}()
			skipped, err := p.server.SkipControl(5 * time.Second)
			if !skipped || err != nil || len(r.events) != 1 || r.events[0][5:] != "abc" || p.server.Buffered() != 0 {
				t.Fatalf("%x cut at %d: skipped %v, err %v, events %q, %d bytes left", op, cut, skipped, err, r.events, p.server.Buffered())
			}
		}
	}

	p := dial(t)
	write(t, p, frame(0x8A, "abc")[:4])
	p.await(t, 4)
	start := time.Now()
	skipped, err := p.server.SkipControl(300 * time.Millisecond)
	took := time.Since(start)
	if skipped || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a pong never completed: skipped %v, err %v; want a timeout", skipped, err)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("the wait for a pong never completed ended after %s, want about 300ms", took)
	}
	// The deadline is gone: a read waits for the peer again.
	go func() {
		time.Sleep(500 * time.Millisecond)
		p.client.NetConn().Write(frame(0x8A, "abc")[4:])
	}()
	if _, err := p.server.in.Peek(len(frame(0x8A, "abc"))); err != nil {
		t.Fatalf("read after the wait: %v", err)
	}
}
