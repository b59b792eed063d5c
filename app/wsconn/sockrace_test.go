//go:build linux

package wsconn

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// TestSockCloseWhileWriting: Close while other goroutines write, and a new
// socket accepted at once (it may take the closed descriptor's number): no
// byte of the closed socket's writers reaches the new socket's peer.
// gorilla allows Close concurrently with every other method.
func TestSockCloseWhileWriting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() net.Conn {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return client
	}
	// detached accepts a dialed client's socket and takes it out of Go's
	// poller, as Upgrade does.
	detached := func(nc net.Conn) *sock {
		t.Helper()
		c, err := detach(nc)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*sock)
	}
	accept := func() net.Conn {
		t.Helper()
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	client := dial()
	s := detached(accept())
	const writers, rounds = 3, 10000
	for round := range rounds {
		client2 := dial() // queued: its accept takes the lowest free number
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for {
					if _, err := s.Write([]byte("A")); err != nil {
						return
					}
				}
			})
		}
		s.Close()
		nc := accept()
		wg.Wait()
		if _, err := nc.Write([]byte("Z")); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(client2, b[:]); err != nil {
			t.Fatal(err)
		}
		if b[0] != 'Z' {
			t.Fatalf("round %d: a new socket's peer received %q, written to the socket closed before it", round, b[:])
		}
		client.Close()
		s, client = detached(nc), client2
	}
	s.Close()
	client.Close()
	if _, err := s.Write([]byte("A")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a write after Close: %v, want net.ErrClosed", err)
	}
}
