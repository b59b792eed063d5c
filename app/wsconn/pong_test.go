package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSkipControl feeds each case's bytes to two connections: one read as a
// session reads (SkipControl, else gorilla's ReadMessage), one by gorilla
// alone. SkipControl (not waiting) must consume exactly one whole masked
// ping or pong at the head of the buffer and nothing else, and both
// connections must then see the same handler calls, messages and error:
// what SkipControl skips, it handles as gorilla would, and what it leaves,
// gorilla handles.
func TestSkipControl(t *testing.T) {
	end := frame(0x81, "end")
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	hello := frame(0x8A, "hello")
	for _, c := range []struct {
		name     string
		sent     []byte // before SkipControl
		later    []byte // after it
		failPong bool   // the pong handler returns an error
		skipped  bool
		consumed int
	}{
		{name: "pong", sent: cat(frame(0x8A, ""), end), skipped: true, consumed: 6},
		{name: "pong with payload", sent: cat(hello, end), skipped: true, consumed: len(hello)},
		{name: "pong of 125 bytes", sent: cat(frame(0x8A, strings.Repeat("p", 125)), end), skipped: true, consumed: 131},
		{name: "two pongs: one at a time", sent: cat(frame(0x8A, "a"), frame(0x8A, "b"), end), skipped: true, consumed: 7},
		{name: "pong alone", sent: frame(0x8A, "x"), later: end, skipped: true, consumed: 7},
		{name: "pong handler fails", sent: cat(hello, end), failPong: true, skipped: true, consumed: len(hello)},
		{name: "ping", sent: cat(frame(0x89, "hi"), end), skipped: true, consumed: 8},
		{name: "ping of 125 bytes", sent: cat(frame(0x89, strings.Repeat("p", 125)), end), skipped: true, consumed: 131},
		{name: "ping without FIN", sent: cat(frame(0x09, "x"), end)},
		{name: "partial ping", sent: frame(0x89, "hi")[:5], later: cat(frame(0x89, "hi")[5:], end)},
		{name: "close", sent: frame(0x88, "\x03\xe8bye")},
		{name: "text", sent: cat(frame(0x81, "hi"), end)},
		{name: "binary", sent: cat(frame(0x82, "hi"), end)},
		{name: "fragmented text", sent: cat(frame(0x01, "he"), frame(0x80, "llo"), end)},
		{name: "pong inside a fragmented text", sent: cat(frame(0x01, "he"), hello, frame(0x80, "llo"), end)},
		{name: "pong without FIN", sent: cat(frame(0x0A, "x"), end)},
		{name: "pong with RSV1", sent: cat(frame(0xCA, ""), end)},
		{name: "unmasked pong", sent: cat([]byte{0x8A, 0x00}, end)},
		{name: "pong of 126 bytes", sent: cat(frame(0x8A, strings.Repeat("p", 126)), end)},
		{name: "partial pong: one byte", sent: hello[:1], later: cat(hello[1:], end)},
		{name: "partial pong: half the mask", sent: hello[:4], later: cat(hello[4:], end)},
		{name: "partial pong: part of the payload", sent: hello[:8], later: cat(hello[8:], end)},
	} {
		t.Run(c.name, func(t *testing.T) {
			skipping, plain := dial(t), dial(t)
			withSkip := record(skipping, c.failPong)
			alone := record(plain, c.failPong)

			write(t, skipping, c.sent)
			skipping.await(t, len(c.sent))
			skipped, err := skipping.server.SkipControl(0)
			if skipped != c.skipped {
				t.Fatalf("SkipControl(0) = %v, want %v", skipped, c.skipped)
			}
			if left := skipping.server.Buffered(); left != len(c.sent)-c.consumed {
				t.Fatalf("SkipControl consumed %d bytes, want %d", len(c.sent)-left, c.consumed)
			}
			write(t, skipping, c.later)
			if err != nil {
				withSkip.err = err.Error()
			} else {
				// As a session: gorilla reads next unless a frame was skipped.
				withSkip.read(skipping, true, !skipped)
			}

			write(t, plain, c.sent)
			write(t, plain, c.later)
			alone.read(plain, false, true)

			if !slices.Equal(withSkip.events, alone.events) || withSkip.err != alone.err {
				t.Fatalf("with SkipControl: %q, error %q\ngorilla alone: %q, error %q", withSkip.events, withSkip.err, alone.events, alone.err)
			}
			t.Logf("%q, error %q", alone.events, alone.err)
		})
	}
}

// reading is what a connection's reader saw: handler calls and messages.
type reading struct {
	events []string
	err    string
}

func record(p pair, failPong bool) *reading {
	r := &reading{}
	p.server.SetPongHandler(func(data string) error {
		r.events = append(r.events, "pong "+data)
		if failPong {
			return errors.New("pong refused")
		}
		return nil
	})
	p.server.SetPingHandler(func(data string) error {
		r.events = append(r.events, "ping "+data)
		return nil
	})
	return r
}

// read reads until the message "end" or an error: as a session does if
// skipping (SkipControl, else gorilla's ReadMessage), else as gorilla alone.
// readFirst starts with gorilla's read.
func (r *reading) read(p pair, skipping, readFirst bool) {
	p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if skipping && !readFirst {
			skipped, err := p.server.SkipControl(0)
			if err != nil {
				r.err = err.Error()
				return
			}
			if skipped {
				continue
			}
		}
		readFirst = false
		kind, data, err := p.server.ReadMessage()
		if err != nil {
			r.err = err.Error()
			return
		}
		r.events = append(r.events, fmt.Sprintf("message %d %s", kind, data))
		if string(data) == "end" {
			return
		}
	}
}

func write(t *testing.T, p pair, b []byte) {
	t.Helper()
	if len(b) == 0 {
		return
	}
	if _, err := p.client.NetConn().Write(b); err != nil {
		t.Fatal(err)
	}
}
