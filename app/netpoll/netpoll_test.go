//go:build linux

package netpoll

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// quiet is how long a test waits to see that a report does not come.
const quiet = 200 * time.Millisecond

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pair is a connected stream socket pair: the watched end and its peer.
func pair(t *testing.T) (watched, peer int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func watch(t *testing.T, p *Poller, fd int) (*Watch, chan struct{}) {
	t.Helper()
	reports := make(chan struct{}, 16)
	w, err := p.Watch(fd, func() { reports <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	return w, reports
}

func send(t *testing.T, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func reported(t *testing.T, reports chan struct{}, why string) {
	t.Helper()
	select {
	case <-reports:
	case <-time.After(5 * time.Second):
		t.Fatalf("no report: %s", why)
	}
}

func silent(t *testing.T, reports chan struct{}, why string) {
	t.Helper()
	select {
	case <-reports:
		t.Fatalf("reported: %s", why)
	case <-time.After(quiet):
	}
}

// TestAWatchReportsOnceUntilArmed: the reader that takes a report owns the
// socket until it arms the watch again, however much more arrives.
func TestAWatchReportsOnceUntilArmed(t *testing.T) {
	p := newPoller(t)
	fd, peer := pair(t)
	w, reports := watch(t, p, fd)
	silent(t, reports, "nothing was sent yet")
	send(t, peer)
	reported(t, reports, "the peer sent a byte")
	send(t, peer)
	silent(t, reports, "more came before the watch was armed again")
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	reported(t, reports, "armed with two unread bytes: it is readable now")
	var buf [8]byte
	unix.Read(fd, buf[:])
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	silent(t, reports, "armed with everything read")
	send(t, peer)
	reported(t, reports, "the peer sent again")
}

// TestAWatchReportsTheEnds: a peer's close and a shutdown of the socket are
// reported like data, so the reader finds them.
func TestAWatchReportsTheEnds(t *testing.T) {
	for name, end := range map[string]func(fd, peer int) error{
		"peer closes": func(_, peer int) error { return unix.Close(peer) },
		"shutdown":    func(fd, _ int) error { return unix.Shutdown(fd, unix.SHUT_RDWR) },
	} {
		t.Run(name, func(t *testing.T) {
			p := newPoller(t)
			fd, peer := pair(t)
			_, reports := watch(t, p, fd)
			if err := end(fd, peer); err != nil {
				t.Fatal(err)
			}
			reported(t, reports, name)
		})
	}
}

// TestAReusedDescriptorReportsToItsNewWatch: the kernel gives a closed
// descriptor's number to the next socket at once; the old watch must never
// hear of the new socket, nor the new watch miss it.
func TestAReusedDescriptorReportsToItsNewWatch(t *testing.T) {
	p := newPoller(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	old, oldReports := watch(t, p, fds[0])
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	unix.Close(fds[1])
	next, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd, peer := next[0], next[1]
	if fd != fds[0] {
		// Put the new socket at the closed number, as the kernel usually does.
		if err := unix.Dup3(fd, fds[0], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = fds[0]
	}
	t.Cleanup(func() { unix.Close(fd); unix.Close(peer) })
	_, reports := watch(t, p, fd)
	send(t, peer)
	reported(t, reports, "the new socket's peer sent a byte")
	silent(t, oldReports, "the old watch was stopped before its socket closed")
}

// TestNoReportAfterClose: Close waits for the poller's goroutine, and a
// watch made after it is refused.
func TestNoReportAfterClose(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	fd, peer := pair(t)
	_, reports := watch(t, p, fd)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	send(t, peer)
	silent(t, reports, "the poller was closed")
	if _, err := p.Watch(fd, func() {}); err != ErrStopped {
		t.Fatalf("Watch after Close: %v, want ErrStopped", err)
	}
}

// Each frame a client sends re-arms its watch: that costs no allocation,
// which the collector would pay for at every message.
func TestArmAllocatesNothing(t *testing.T) {
	p := newPoller(t)
	fd, _ := pair(t)
	w, _ := watch(t, p, fd)
	if n := testing.AllocsPerRun(100, func() {
		if err := w.Arm(); err != nil {
			t.Fatal(err)
		}
	}); n > 0 {
		t.Errorf("Arm made %.0f allocations, want none", n)
	}
}

// TestDetach: the socket outlives net's connection, which Detach closes, and
// is the caller's through the returned descriptor.
func TestDetach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := Detach(server)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := server.Write([]byte("x")); err == nil {
		t.Fatal("net's connection still writes after Detach")
	}
	if _, err := unix.Write(fd, []byte("hi")); err != nil {
		t.Fatalf("write to the detached descriptor: %v", err)
	}
	var b [2]byte
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, b[:]); err != nil || string(b[:]) != "hi" {
		t.Fatalf("the client read %q, %v; want \"hi\"", b[:], err)
	}
}
