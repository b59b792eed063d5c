package wsconn

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHoldCoalesces: the frames gorilla writes while the connection is held
// reach the socket in one write per batch (one per coalesceLimit bytes for a
// large one), and reach the client whole and in order; the write deadline
// gorilla sets before every frame reaches the socket only when it changes.
func TestHoldCoalesces(t *testing.T) {
	p := dialCounting(t)
	s := p.server
	received := make(chan []byte, 1000)
	go func() {
		defer close(received)
		for {
			_, data, err := p.client.ReadMessage()
			if err != nil {
				return
			}
			received <- data
		}
	}()
	expect := func(t *testing.T, frames [][]byte) {
		t.Helper()
		for i, want := range frames {
			select {
			case got, ok := <-received:
				if !ok {
					t.Fatalf("the client's connection ended before frame %d of %d", i+1, len(frames))
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d of %d: got %d bytes %.40q..., want %d bytes %.40q...", i+1, len(frames), len(got), got, len(want), want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("frame %d of %d never arrived", i+1, len(frames))
			}
		}
	}
	write := func(t *testing.T, frames [][]byte) {
		t.Helper()
		for _, f := range frames {
			if err := s.WriteMessage(websocket.TextMessage, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	frames := func(n, size int) [][]byte {
		fs := make([][]byte, n)
		for i := range fs {
			fs[i] = fmt.Appendf(nil, "frame %d ", i)
			fs[i] = append(fs[i], bytes.Repeat([]byte{'a' + byte(i%26)}, max(0, size-len(fs[i])))...)
		}
		return fs
	}
	writes, deadlines := p.raw.writes.Load, p.raw.deadlines.Load
	s.SetWriteDeadline(time.Now().Add(time.Minute))

	t.Run("not held: a write per frame", func(t *testing.T) {
		w, d := writes(), deadlines()
		fs := frames(3, 100)
		write(t, fs)
		if got := writes() - w; got != 3 {
			t.Fatalf("3 frames not held took %d writes, want 3: gorilla writes each frame to the hijacked conn", got)
		}
		if got := deadlines() - d; got != 1 {
			t.Fatalf("3 frames under one deadline set it on the socket %d times, want 1", got)
		}
		expect(t, fs)
	})

	t.Run("held: one write a batch", func(t *testing.T) {
		w, d := writes(), deadlines()
		fs := frames(50, 100)
		s.Hold()
		write(t, fs)
		if got := writes() - w; got != 0 {
			t.Fatalf("%d writes reached the socket while held", got)
		}
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		if got := writes() - w; got != 1 {
			t.Fatalf("a held batch of 50 frames took %d writes, want 1", got)
		}
		if got := deadlines() - d; got != 0 {
			t.Fatalf("an unchanged deadline reached the socket %d times", got)
		}
		expect(t, fs)
	})

	t.Run("held past the coalescing limit", func(t *testing.T) {
		w := writes()
		fs := frames(100, 1000) // 100,400 bytes framed
		total := 100 * (1000 + 4)
		s.Hold()
		write(t, fs)
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		least := (total + coalesceLimit - 1) / coalesceLimit
		if got := writes() - w; got < int64(least) || got > int64(least+1) {
			t.Fatalf("a held batch of %d bytes took %d writes, want %d or %d", total, got, least, least+1)
		}
		expect(t, fs)
	})

	t.Run("held: a frame larger than the limit", func(t *testing.T) {
		w := writes()
		fs := [][]byte{[]byte("before"), bytes.Repeat([]byte("0123456789"), 10_000), []byte("after")}
		s.Hold()
		write(t, fs)
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		if got := writes() - w; got > 3 {
			t.Fatalf("took %d writes, want at most 3: the gathered frame, the large one, the last", got)
		}
		expect(t, fs)
	})

	t.Run("held, nothing written", func(t *testing.T) {
		w := writes()
		s.Hold()
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
		if got := writes() - w; got != 0 {
			t.Fatalf("an empty batch took %d writes", got)
		}
	})

	t.Run("a new deadline reaches the socket", func(t *testing.T) {
		d := deadlines()
		s.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		fs := frames(2, 10)
		write(t, fs)
		if got := deadlines() - d; got != 1 {
			t.Fatalf("a new deadline reached the socket %d times, want 1", got)
		}
		expect(t, fs)
	})
}
