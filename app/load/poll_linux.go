package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchboard-dev/switchboard/app/netpoll"
)

// A poller reads many connections from one goroutine with epoll: at tens
// of thousands of deliveries a second a goroutine per connection costs the
// load tool more CPU than the server it measures (two reads per frame, one
// of them EAGAIN, and a park and wakeup each), and on a shared host that
// CPU is taken from the server.
type poller struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]*conn
	stop  atomic.Bool
	done  chan struct{}
	err   error // why the loop ended early, read after done
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{epfd: epfd, conns: map[int32]*conn{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

func (p *poller) add(c *conn, fd *fdConn) error {
	p.mu.Lock()
	p.conns[int32(fd.fd)] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd.fd, &ev); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// close stops the loop; the connections stay open.
func (p *poller) close() error {
	p.stop.Store(true)
	<-p.done
	unix.Close(p.epfd)
	return p.err
}

// loop reads each ready connection once per wakeup (level-triggered: what
// is left is reported again).
func (p *poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	ready := make([]*conn, 0, len(events))
	var buf []byte
	for !p.stop.Load() {
		n, err := unix.EpollWait(p.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.err = fmt.Errorf("epoll wait: %w", err)
			return
		}
		ready = ready[:0]
		p.mu.Lock()
		for _, ev := range events[:n] {
			ready = append(ready, p.conns[ev.Fd])
		}
		p.mu.Unlock()
		for i, c := range ready {
			if c == nil {
				continue
			}
			fd := int(events[i].Fd)
			var alive bool
			buf, alive = c.receive(buf)
			if !alive {
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
				p.mu.Lock()
				delete(p.conns, int32(fd))
				p.mu.Unlock()
			}
		}
	}
}

// fdConn is a socket's descriptor taken from Go's network poller.
type fdConn struct{ fd int }

// detach takes tc's socket out of Go's poller (netpoll.Detach).
func detach(tc *net.TCPConn) (*fdConn, error) {
	fd, err := netpoll.Detach(tc)
	if err != nil {
		return nil, err
	}
	return &fdConn{fd: fd}, nil
}

// Read reads what the socket holds without waiting: 0 and no error when it
// holds nothing yet, io.EOF once the peer has closed it.
func (f *fdConn) Read(b []byte) (int, error) {
	n, err := unix.Read(f.fd, b)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read: %w", err)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting while the socket is full.
func (f *fdConn) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(f.fd, b[n:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			pfd := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLOUT}}
			if k, err := unix.Poll(pfd, int(setupTimeout/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
				return n, fmt.Errorf("write: %w", err)
			} else if k == 0 {
				return n, fmt.Errorf("write: the socket stayed full for %s", setupTimeout)
			}
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return n, fmt.Errorf("write: %w", err)
		default:
			n += m
		}
	}
	return n, nil
}

func (f *fdConn) Close() error { return unix.Close(f.fd) }
