package wsconn

import (
	"bufio"
	"net"
	"sync"
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
	in *bufio.Reader // what gorilla reads through

	mu       sync.Mutex
	held     bool
	buf      *[]byte
	deadline time.Time
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.held {
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
