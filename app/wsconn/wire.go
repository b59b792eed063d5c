package wsconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// coalesceLimit is how much a held wire gathers before it writes anyway.
const coalesceLimit = 32 << 10

var coalesceBuffers = sync.Pool{New: func() any { b := make([]byte, 0, coalesceLimit); return &b }}

// wire is the connection under gorilla's framing. While it is held, the
// frames of one batch gather in a pooled buffer and reach the kernel in one
// write: a peer behind on a busy stream then costs one syscall per batch, and
// one read and write in a proxy, instead of one per frame. It also skips
// setting a write deadline equal to the one already set, which gorilla does
// before every frame.
type wire struct {
	net.Conn

	mu       sync.Mutex
	held     bool
	buf      *[]byte // gathered while held; the rest of a frame tryWrite began
	deadline time.Time
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.held {
		if err := w.drop(); err != nil {
			return 0, err
		}
		return w.Conn.Write(p)
	}
	if w.buf == nil {
		w.buf = coalesceBuffers.Get().(*[]byte)
	}
	if len(*w.buf)+len(p) > coalesceLimit {
		if err := w.flush(); err != nil {
			return 0, err
		}
		if len(p) > coalesceLimit {
			return w.Conn.Write(p)
		}
	}
	*w.buf = append(*w.buf, p...)
	return len(p), nil
}

func (w *wire) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.Equal(w.deadline) {
		return nil
	}
	w.deadline = t
	return w.Conn.SetWriteDeadline(t)
}

// hold gathers writes until release.
func (w *wire) hold() {
	w.mu.Lock()
	w.held = true
	w.mu.Unlock()
}

// release writes what was gathered and returns the buffer to the pool.
func (w *wire) release() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = false
	return w.drop()
}

// drop writes what waits in the buffer and returns it to the pool.
func (w *wire) drop() error {
	if w.buf == nil {
		return nil
	}
	err := w.flush()
	coalesceBuffers.Put(w.buf)
	w.buf = nil
	return err
}

func (w *wire) flush() error {
	_, err := w.Conn.Write(*w.buf)
	*w.buf = (*w.buf)[:0]
	return err
}

// tryWrite writes frame with one system call that does not wait. It reports
// whether any of it went: the rest, if some is left, goes first in the next
// release. Nothing goes while a batch is held or a rest waits, when the
// socket is full, or when the connection is not a socket.
//
// It writes the descriptor directly (writeNow), not through Go's poller:
// the poller's write takes the descriptor's lock, re-checks the deadline
// and enters the scheduler's syscall state, and in that state the runtime's
// monitor hands the processor to another thread whenever it finds a write
// of a fan-out in progress: a thread wakeup and switch every few hundred
// deliveries on one core. A write that does not wait needs none of it, and
// no deadline: the writer goroutine's blocking writes keep theirs.
func (w *wire) tryWrite(frame []byte) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held || w.buf != nil {
		return false, nil
	}
	n, err := w.writeNow(frame)
	switch {
	case err == errNotSocket:
		return false, nil
	case err == syscall.EAGAIN, err == syscall.EINTR:
		return false, nil // the blocking write will report a real failure
	case err != nil:
		return false, err
	case n < len(frame):
		w.buf = coalesceBuffers.Get().(*[]byte)
		*w.buf = append((*w.buf)[:0], frame[n:]...)
	}
	return true, nil
}

// nowWriter is a connection that writes without waiting itself: sock.
type nowWriter interface {
	tryWrite(b []byte) (int, error)
}

var errNotSocket = errors.New("wsconn: the connection is not a socket")

// writeNow writes b with one system call that does not wait, while the
// descriptor is in use and so cannot be closed and given to another socket:
// a sock's own use count, or net's through Control.
func (w *wire) writeNow(b []byte) (int, error) {
	if s, ok := w.Conn.(nowWriter); ok {
		return s.tryWrite(b)
	}
	raw, err := rawConn(w.Conn)
	if err != nil {
		return 0, errNotSocket
	}
	var n int
	var werr error
	if err := raw.Control(func(fd uintptr) { n, werr = writeNow(int(fd), b) }); err != nil {
		return 0, err
	}
	return n, werr
}

// pending tells whether the rest of a frame waits for release.
func (w *wire) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf != nil
}

// rawConn is nc's socket for system calls of this package's own.
func rawConn(nc net.Conn) (syscall.RawConn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}
