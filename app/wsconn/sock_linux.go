package wsconn

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard-dev/switchboard/app/netpoll"
)

// sock is an upgraded socket taken out of Go's network poller. The poller
// keeps, for each descriptor in it, a 512-byte poll descriptor outside the
// heap, and net's connection its file, two addresses and a finalizer: about
// 0.8 KiB of an idle connection's 4 (docs/internals.md). An idle connection
// needs none of it, since the instance's netpoll set reports its client's
// bytes; reads and writes are system calls on the descriptor, and only one
// that must wait puts a duplicate of the descriptor in Go's poller for as
// long as it waits (a frame begun, a full socket), under the deadline set.
//
// Close may run concurrently with every other method, as gorilla allows: a
// closed descriptor's number goes to the next socket at once, so each system
// call on fd holds a use (refs), and the last use's end closes fd. Close
// wakes a read or write that waits.
type sock struct {
	fd   int
	refs atomic.Int32 // closedBit, and the system calls on fd in progress
	// The deadlines, ns since base (noDeadline: none).
	deadline [2]atomic.Int64
	mu       sync.Mutex
	waits    [2]*os.File // a waiting read's and write's duplicate, to pass deadlines and Close on
}

// closedBit marks a closed sock's refs.
const closedBit = 1 << 30

// acquire takes a use of fd: nil unless s is closed; release gives it back.
func (s *sock) acquire() error {
	for {
		r := s.refs.Load()
		if r&closedBit != 0 {
			return net.ErrClosed
		}
		if s.refs.CompareAndSwap(r, r+1) {
			return nil
		}
	}
}

func (s *sock) release() {
	if s.refs.Add(-1) == closedBit {
		syscall.Close(s.fd)
	}
}

func (s *sock) isClosed() bool { return s.refs.Load()&closedBit != 0 }

// base is the origin of socks' deadlines: with its monotonic reading, a
// step of the wall clock moves none of them, as for net's.
var base = time.Now()

// noDeadline is a deadline never reached. One past what an offset holds
// (about 292 years from base) is none too: t.Sub(base) saturates there.
const noDeadline = math.MaxInt64

// sinceBase is t as a sock's deadline.
func sinceBase(t time.Time) int64 {
	if t.IsZero() {
		return noDeadline
	}
	return int64(t.Sub(base))
}

// The kinds of a sock's operations: indexes of its deadlines and waits.
const (
	opRead = iota
	opWrite
)

var (
	calls   = [2]func(int, []byte) (int, error){syscall.Read, syscall.Write}
	opNames = [2]string{"read", "write"}
)

// detach takes nc's socket out of Go's poller when nc is one of net's
// sockets (any other net.Conn is kept as it is) and closes nc, also when
// it fails: the socket stays open, as the returned connection's.
func detach(nc net.Conn) (net.Conn, error) {
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nc, nil
	}
	fd, err := netpoll.Detach(nc)
	if err != nil {
		return nil, fmt.Errorf("wsconn: %w", err)
	}
	s := &sock{fd: fd}
	s.deadline[opRead].Store(noDeadline)
	s.deadline[opWrite].Store(noDeadline)
	return s, nil
}

func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.ready(opRead); err != nil {
		return 0, err
	}
	n, err := s.raw(syscall.Read, p)
	if err == syscall.EAGAIN {
		n, err = s.wait(opRead, p)
	}
	switch {
	case err != nil:
		return 0, s.wrap("read", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *sock) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		if err := s.ready(opWrite); err != nil {
			return done, err
		}
		n, err := s.raw(syscall.Write, p[done:])
		if err == syscall.EAGAIN {
			n, err = s.wait(opWrite, p[done:])
		}
		if err != nil {
			return done, s.wrap("write", err)
		}
		done += n
	}
	return done, nil
}

// raw reads or writes fd once, under a use.
func (s *sock) raw(call func(int, []byte) (int, error), p []byte) (int, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	return ignoringEINTR(call, s.fd, p)
}

// tryWrite writes b with one system call that does not wait (writeNow).
func (s *sock) tryWrite(b []byte) (int, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	return writeNow(s.fd, b)
}

// ready is nil while s is open and the deadline of kind has not passed.
func (s *sock) ready(kind int) error {
	if s.isClosed() {
		return net.ErrClosed
	}
	if int64(time.Since(base)) >= s.deadline[kind].Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait reads or writes p once the socket is ready for it, through a
// duplicate of the descriptor in Go's poller, under the deadline of kind.
// Without a duplicate in the poller (out of descriptors, or of
// fs.epoll.max_user_watches) it polls the descriptor instead.
func (s *sock) wait(kind int, p []byte) (int, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	dup, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 0)
	s.release()
	if err != nil {
		return s.poll(kind, p, fmt.Errorf("dup: %w", err))
	}
	f := os.NewFile(uintptr(dup), "socket") // non-blocking: in Go's poller
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("a waiting %s's duplicate: %w", opNames[kind], err)
	}
	s.mu.Lock()
	if s.isClosed() { // Close has passed the waits by
		s.mu.Unlock()
		return 0, net.ErrClosed
	}
	s.waits[kind] = f
	err = setDeadline(f, kind, s.deadline[kind].Load())
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waits[kind] = nil
		s.mu.Unlock()
	}()
	if errors.Is(err, os.ErrNoDeadline) { // Go's poller did not take the duplicate
		return s.poll(kind, p, err)
	}
	if err != nil {
		return 0, fmt.Errorf("a waiting %s's deadline: %w", opNames[kind], err)
	}
	var n int
	var opErr error
	try := func(fd uintptr) bool {
		n, opErr = ignoringEINTR(calls[kind], int(fd), p)
		return opErr != syscall.EAGAIN
	}
	if kind == opRead {
		err = raw.Read(try)
	} else {
		err = raw.Write(try)
	}
	if err != nil {
		return 0, err
	}
	return n, opErr
}

// pollSlice is how long poll waits before it looks again at Close and the
// deadline, neither of which wakes poll(2).
const pollSlice = 50 * time.Millisecond

// poll is wait without Go's poller, after why failed it: poll(2) on the
// descriptor under a use, a slice at a time. It holds a thread while it
// waits, and delays Close's close(2) by up to a slice.
func (s *sock) poll(kind int, p []byte, why error) (int, error) {
	events := int16(unix.POLLIN)
	if kind == opWrite {
		events = unix.POLLOUT
	}
	for {
		if err := s.ready(kind); err != nil {
			return 0, err
		}
		left := time.Duration(s.deadline[kind].Load() - int64(time.Since(base)))
		ms := int(max(time.Millisecond, min(left, pollSlice)) / time.Millisecond)
		if err := s.acquire(); err != nil {
			return 0, err
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: events}}
		_, err := unix.Poll(fds, ms)
		n, opErr := 0, error(syscall.EAGAIN)
		if err == nil || err == syscall.EINTR {
			n, opErr = ignoringEINTR(calls[kind], s.fd, p)
		}
		s.release()
		if err != nil && err != syscall.EINTR {
			return 0, fmt.Errorf("poll, as %v: %w", why, err)
		}
		if opErr != syscall.EAGAIN {
			return n, opErr
		}
	}
}

// wrap gives a failed operation's error as net's connections do: a passed
// deadline stays os.ErrDeadlineExceeded, a closed socket net.ErrClosed.
func (s *sock) wrap(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return os.ErrDeadlineExceeded
	case s.isClosed():
		return net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "socket", Err: os.NewSyscallError(op, err)}
}

func ignoringEINTR(call func(int, []byte) (int, error), fd int, p []byte) (int, error) {
	for {
		n, err := call(fd, p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}

func setDeadline(f *os.File, kind int, d int64) error {
	var t time.Time
	if d != noDeadline {
		t = base.Add(time.Duration(d))
	}
	if kind == opRead {
		return f.SetReadDeadline(t)
	}
	return f.SetWriteDeadline(t)
}

// Close closes the descriptor once no system call uses it; a read or write
// waiting returns.
func (s *sock) Close() error {
	s.mu.Lock()
	r := s.refs.Load()
	for r&closedBit == 0 && !s.refs.CompareAndSwap(r, r|closedBit) {
		r = s.refs.Load()
	}
	if r&closedBit != 0 {
		s.mu.Unlock()
		return net.ErrClosed
	}
	for _, f := range s.waits {
		if f != nil {
			f.Close()
		}
	}
	s.mu.Unlock()
	if r == 0 { // no use in progress: none will end to close fd
		return syscall.Close(s.fd)
	}
	return nil
}

func (s *sock) SetDeadline(t time.Time) error {
	s.setDeadline(opRead, t)
	s.setDeadline(opWrite, t)
	return nil
}

func (s *sock) SetReadDeadline(t time.Time) error  { s.setDeadline(opRead, t); return nil }
func (s *sock) SetWriteDeadline(t time.Time) error { s.setDeadline(opWrite, t); return nil }

// setDeadline keeps a deadline, and passes it to the wait in progress.
func (s *sock) setDeadline(kind int, t time.Time) {
	d := sinceBase(t)
	s.deadline[kind].Store(d)
	s.mu.Lock()
	if f := s.waits[kind]; f != nil {
		setDeadline(f, kind, d)
	}
	s.mu.Unlock()
}

// LocalAddr and RemoteAddr ask the system: nothing keeps them meanwhile.
// Once the socket is closed, or the peer gone, they are an empty address,
// never nil, whose String callers may call.
func (s *sock) LocalAddr() net.Addr  { return s.addr(unix.Getsockname) }
func (s *sock) RemoteAddr() net.Addr { return s.addr(unix.Getpeername) }

func (s *sock) addr(get func(int) (unix.Sockaddr, error)) net.Addr {
	if s.acquire() != nil {
		return &net.TCPAddr{}
	}
	defer s.release()
	sa, err := get(s.fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	return addrOf(sa)
}

func addrOf(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return &net.TCPAddr{}
}

// SyscallConn gives this package's own system calls the descriptor.
func (s *sock) SyscallConn() (syscall.RawConn, error) { return control{s}, nil }

// control is a sock's syscall.RawConn for Control: Read and Write are
// not for waiting on it.
type control struct{ s *sock }

func (c control) Control(f func(fd uintptr)) error {
	if err := c.s.acquire(); err != nil {
		return err
	}
	defer c.s.release()
	f(uintptr(c.s.fd))
	return nil
}

func (c control) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (c control) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }
