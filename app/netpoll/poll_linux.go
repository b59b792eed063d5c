package netpoll

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller calls each ready watch's function on its one goroutine: the
// function should hand the work over and return at once. Its epoll set sits
// in Go's own poller, so the goroutine parks like any socket reader rather
// than holding a thread in epoll_wait.
type Poller struct {
	epoll *os.File
	raw   syscall.RawConn
	mu    sync.Mutex
	next  uint64
	// Watches by id: the kernel's events carry ids, not descriptors, since
	// a closed descriptor's number is given to the next socket at once.
	watches map[uint64]*Watch
	closed  bool
	failed  error // why the loop ended before Close
	done    chan struct{}
}

// Watch is one socket in a Poller.
type Watch struct {
	p     *Poller
	fd    int
	id    uint64
	ready func()
}

// armed is what a watch waits for. EPOLLRDHUP (and EPOLLHUP, always
// reported) make a peer's close and a shutdown ready too, so that the reader
// finds them.
const armed = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// New starts a poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: nonblocking epoll: %w", err)
	}
	p := &Poller{epoll: os.NewFile(uintptr(epfd), "epoll"), watches: map[uint64]*Watch{}, done: make(chan struct{})}
	// Only a descriptor in Go's poller takes deadlines: without it the loop
	// could not park.
	if err := p.epoll.SetReadDeadline(time.Time{}); err != nil {
		p.epoll.Close()
		return nil, fmt.Errorf("netpoll: the epoll descriptor is not in Go's poller: %w", err)
	}
	if p.raw, err = p.epoll.SyscallConn(); err != nil {
		p.epoll.Close()
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	go p.loop()
	return p, nil
}

// Detach takes nc's socket out of Go's network poller, which keeps 512
// bytes outside the heap for each descriptor in it, for a reader that
// watches it here instead: it returns a duplicate of the descriptor
// (non-blocking as Go made it, close-on-exec), the caller's to close, and
// closes nc, also when it fails.
func Detach(nc net.Conn) (int, error) {
	defer nc.Close()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("netpoll: detach a %T: not a socket", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("netpoll: detach: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(d uintptr) { fd, derr = unix.FcntlInt(d, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("netpoll: detach: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("netpoll: detach: dup: %w", derr)
	}
	return fd, nil
}

// Watch arms a watch on fd that calls ready once fd is readable, closed by
// the peer or shut down. fd must stay open until the watch is stopped.
func (p *Poller) Watch(fd int, ready func()) (*Watch, error) {
	p.mu.Lock()
	if p.closed || p.failed != nil {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	p.next++
	w := &Watch{p: p, fd: fd, id: p.next, ready: ready}
	p.watches[w.id] = w
	p.mu.Unlock()
	if err := p.ctl(unix.EPOLL_CTL_ADD, w); err != nil {
		w.forget()
		return nil, err
	}
	return w, nil
}

// Arm has w report the next readiness of its socket: at once if it is
// readable now.
func (w *Watch) Arm() error { return w.p.ctl(unix.EPOLL_CTL_MOD, w) }

// Stop removes w before its socket is closed. A report already on its way
// may still call ready once.
func (w *Watch) Stop() error {
	w.forget()
	return w.p.ctl(unix.EPOLL_CTL_DEL, w)
}

func (w *Watch) forget() {
	w.p.mu.Lock()
	delete(w.p.watches, w.id)
	w.p.mu.Unlock()
}

func (p *Poller) ctl(op int, w *Watch) error {
	c := ctlCalls.Get().(*ctlCall)
	defer ctlCalls.Put(c)
	c.op, c.fd, c.err = op, w.fd, nil
	c.ev = unix.EpollEvent{Events: armed}
	c.ev.Fd, c.ev.Pad = int32(uint32(w.id)), int32(uint32(w.id>>32))
	// Control keeps the epoll descriptor open meanwhile, and fails once the
	// poller is closed.
	if cerr := p.raw.Control(c.call); cerr != nil {
		return ErrStopped
	}
	if c.err != nil {
		return fmt.Errorf("netpoll: epoll_ctl fd %d: %w", w.fd, c.err)
	}
	return nil
}

// ctlCall is one epoll_ctl through RawConn.Control, pooled: a closure over
// the event and the error escaped to the heap at every re-arm, three
// allocations for each frame a client sends.
type ctlCall struct {
	op, fd int
	ev     unix.EpollEvent
	err    error
	call   func(epfd uintptr) // c.run, made once
}

var ctlCalls = sync.Pool{New: func() any {
	c := new(ctlCall)
	c.call = c.run
	return c
}}

func (c *ctlCall) run(epfd uintptr) { c.err = unix.EpollCtl(int(epfd), c.op, c.fd, &c.ev) }

// Err is why the poller stopped reporting before Close: a live epoll
// descriptor does not fail, so this is for a readiness check.
func (p *Poller) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Close stops the poller's goroutine; the watches' sockets stay open, and
// no ready function is called after it returns.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.epoll.Close() // wakes the loop
	<-p.done
	return err
}

func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	ready := make([]func(), 0, len(events))
	for {
		var n int
		var werr error
		// Read parks in Go's poller until the epoll set has events.
		err := p.raw.Read(func(epfd uintptr) bool {
			n, werr = unix.EpollWait(int(epfd), events, 0)
			return n > 0 || werr != nil
		})
		if errors.Is(werr, unix.EINTR) {
			continue
		}
		ready = ready[:0]
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		if err != nil || werr != nil {
			p.failed = fmt.Errorf("netpoll: epoll_wait: %w", cmp.Or(err, werr))
			p.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if w := p.watches[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; w != nil {
				ready = append(ready, w.ready)
			}
		}
		p.mu.Unlock()
		for _, f := range ready {
			f()
		}
	}
}
