//go:build linux

package wsconn

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// TestUpgradeLeavesGoPoller: an upgraded socket is in none of the process's
// epoll sets (Go's poller keeps a 512-byte descriptor for each socket in its
// set), and its addresses are still the connection's; once it is closed
// they are empty, not nil.
func TestUpgradeLeavesGoPoller(t *testing.T) {
	p := dial(t)
	s, ok := p.server.wire.Conn.(*sock)
	if !ok {
		t.Fatalf("the wire's connection is a %T, want a *sock", p.server.wire.Conn)
	}
	sets, watched := epollWatches(t)
	if sets == 0 {
		t.Fatal("no epoll set in the process: Go's poller should have one")
	}
	if watched[s.fd] {
		t.Fatalf("the upgraded socket (fd %d) is in an epoll set", s.fd)
	}
	client := -1
	if raw, err := p.client.NetConn().(syscall.Conn).SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { client = int(fd) })
	}
	if !watched[client] {
		t.Fatalf("the client's socket (fd %d), one of net's, is in no epoll set: the test does not see Go's poller", client)
	}
	if got, want := p.server.RemoteAddr().String(), p.client.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want the client's %s", got, want)
	}
	if got, want := p.server.LocalAddr().String(), p.client.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	p.server.Close()
	for name, a := range map[string]net.Addr{"LocalAddr": p.server.LocalAddr(), "RemoteAddr": p.server.RemoteAddr()} {
		if a == nil {
			t.Errorf("%s of a closed socket is nil, want an empty address", name)
		}
	}
}

// epollWatches reads /proc/self/fdinfo: how many epoll sets the process has
// and the descriptors any of them watches.
func epollWatches(t *testing.T) (sets int, watched map[int]bool) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	watched = map[int]bool{}
	for _, e := range fds {
		if link, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		sets++
		for line := range strings.Lines(string(info)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" {
				n, _ := strconv.Atoi(f[1])
				watched[n] = true
			}
		}
	}
	return sets, watched
}

// TestSockSize: a socket out of Go's poller costs 64 bytes of heap (a size
// class of the runtime's) in place of net's 264 and the poller's 512.
func TestSockSize(t *testing.T) {
	if n := unsafe.Sizeof(sock{}); n > 64 {
		t.Errorf("sock is %d bytes, past the 64-byte size class", n)
	}
}

// TestSockReadWaits: a read of an empty socket waits for the client's bytes,
// up to the read deadline, and a Close wakes it.
func TestSockReadWaits(t *testing.T) {
	p := dial(t)
	nc := p.server.NetConn()
	var b [8]byte

	nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	began := time.Now()
	if _, err := nc.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of a silent socket under a deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(began); d < 90*time.Millisecond {
		t.Fatalf("the read gave up after %v, before its deadline", d)
	}
	nc.SetReadDeadline(time.Time{})

	got := make(chan error, 1)
	go func() {
		n, err := nc.Read(b[:])
		if err == nil && string(b[:n]) != "hi" {
			err = errors.New("read " + strconv.Quote(string(b[:n])) + ", want \"hi\"")
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // the read waits
	if _, err := p.client.NetConn().Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("a waiting read: %v", err)
	}

	go func() { _, err := nc.Read(b[:]); got <- err }()
	time.Sleep(50 * time.Millisecond)
	nc.Close()
	endedByClose(t, got, "read")
	if _, err := nc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a write after Close: %v, want net.ErrClosed", err)
	}
}

// TestSockWriteWaitsUntilItsDeadline: a write to a socket the client does
// not read waits for room, and gives up at the write deadline (a slow
// consumer's writeTimeout in app/server).
func TestSockWriteWaitsUntilItsDeadline(t *testing.T) {
	p := dial(t)
	setSendBuffer(t, p.server, 16<<10)
	p.server.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	began := time.Now()
	err := p.server.WriteMessage(websocket.TextMessage, make([]byte, 64<<20)) // more than loopback's buffers hold
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write to a full socket: %v, want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(began); d < 190*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the write gave up after %v, want its deadline's 200 ms", d)
	}
}

// TestSockDeadlineFarAwayIsNone: a deadline past what a sock's offset holds
// (here the year 146 billion) never passes, for a write at once or one that
// waits for room.
func TestSockDeadlineFarAwayIsNone(t *testing.T) {
	p := dial(t)
	nc := p.server.NetConn()
	nc.SetWriteDeadline(time.Unix(1<<62, 0))
	if _, err := nc.Write([]byte("hi")); err != nil {
		t.Fatalf("a write under a far deadline: %v", err)
	}
	var b [2]byte
	if _, err := io.ReadFull(p.client.NetConn(), b[:]); err != nil || string(b[:]) != "hi" {
		t.Fatalf("the client read %q, %v; want \"hi\"", b[:], err)
	}
	nc.SetReadDeadline(time.Unix(1<<62, 0))
	go p.client.NetConn().Write([]byte("ok"))
	if _, err := io.ReadFull(nc, b[:]); err != nil || string(b[:]) != "ok" {
		t.Fatalf("a read under a far deadline: %q, %v; want \"ok\"", b[:], err)
	}
}

// TestSockWaitsWithoutADuplicate: out of descriptors, a write that must wait
// gets no duplicate for Go's poller and polls the socket instead: it waits
// for the client to read, gives up at its deadline, and a Close ends it.
func TestSockWaitsWithoutADuplicate(t *testing.T) {
	p := dial(t)
	setSendBuffer(t, p.server, 16<<10)
	p.client.NetConn().(*net.TCPConn).SetReadBuffer(16 << 10)
	nc := p.server.NetConn()
	big := make([]byte, 1<<20) // more than the buffers hold
	client := p.client.NetConn()

	outOfDescriptors(t)
	read := make(chan error, 1)
	go func() { _, err := io.ReadFull(client, make([]byte, len(big))); read <- err }()
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(big); err != nil {
		t.Fatalf("a write that waits for the client's reads: %v", err)
	}
	if err := <-read; err != nil {
		t.Fatalf("the client's read: %v", err)
	}

	nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	began := time.Now()
	if _, err := nc.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write to a full socket: %v, want os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(began); d < 190*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the write gave up after %v, want its deadline's 200 ms", d)
	}

	nc.SetWriteDeadline(time.Time{})
	wrote := make(chan error, 1)
	go func() { _, err := nc.Write(big); wrote <- err }()
	time.Sleep(100 * time.Millisecond) // the write waits
	nc.Close()
	endedByClose(t, wrote, "write")
}

// endedByClose waits for a waiting read's or write's error once Close was
// called: net.ErrClosed, within seconds.
func endedByClose(t *testing.T, done <-chan error, op string) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a %s ended by Close: %v, want net.ErrClosed", op, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close did not end a waiting %s", op)
	}
}

// outOfDescriptors lowers the process's descriptor limit to the descriptors
// open, until the test ends: the next dup fails with EMFILE.
func outOfDescriptors(t *testing.T) {
	t.Helper()
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	free, err := syscall.Dup(0) // the lowest number free
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(free)
	limit := was
	limit.Cur = uint64(free)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was) })
	if fd, err := syscall.Dup(0); err == nil {
		syscall.Close(fd)
		t.Fatal("a dup past the limit succeeded: the test would not see the fallback")
	}
}
