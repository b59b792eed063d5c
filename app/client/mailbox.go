package client

import (
	"sync"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// errorsBuffer is how many errors wait on Errors itself, which is buffered
// so that a user who reads only Messages is not stopped by the occasional
// error, and so that errors handed over stay readable after Close.
const errorsBuffer = 64

// item is a message or, if err is set, an error for the user.
type item struct {
	msg protocol.Message
	err error
}

// mailbox is a bounded FIFO of messages and errors between the client and
// its user, in the order the client produced them. put never waits: what
// does not fit is refused and the client deals with it (see overflow). One
// pump hands the items over in order, messages on an unbuffered channel
// (so a message received is a message handed over), errors into a small
// buffered one, and exits on close even if the user never reads again.
type mailbox struct {
	msgs  chan protocol.Message
	errs  chan error
	limit int
	taken func(item) // called by the pump after each item handed over
	quit  chan struct{}
	gone  chan struct{} // closed when the pump has returned

	mu     sync.Mutex
	queue  []item // queue[0] is the item the pump is handing over
	peak   int    // the longest queue seen (tests check the bound with it)
	wake   chan struct{}
	empty  chan struct{} // closed once the queue is empty; nil if nobody waits
	closed bool
}

func newMailbox(limit int, taken func(item)) *mailbox {
	m := &mailbox{
		msgs: make(chan protocol.Message), errs: make(chan error, errorsBuffer),
		limit: limit, taken: taken, quit: make(chan struct{}), gone: make(chan struct{}),
		wake: make(chan struct{}, 1),
	}
	go m.pump()
	return m
}

// put queues it and reports whether it fit. After close it accepts and
// discards everything.
func (m *mailbox) put(it item) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return true
	}
	if len(m.queue) >= m.limit {
		return false
	}
	m.queue = append(m.queue, it)
	m.peak = max(m.peak, len(m.queue))
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return true
}

// drained is closed once the user has been handed everything queued.
func (m *mailbox) drained() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	if m.empty == nil {
		m.empty = make(chan struct{})
	}
	return m.empty
}

// close stops the pump: what is still queued is discarded, Messages is
// closed, and Errors is closed after the errors already handed to it.
func (m *mailbox) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.queue = nil
		close(m.quit)
	}
}

func (m *mailbox) len() (n, peak int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue), m.peak
}

func (m *mailbox) pump() {
	defer close(m.gone)
	defer close(m.msgs)
	defer close(m.errs)
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		if len(m.queue) == 0 {
			if m.empty != nil {
				close(m.empty)
				m.empty = nil
			}
			m.mu.Unlock()
			select {
			case <-m.wake:
			case <-m.quit:
			}
			continue
		}
		it := m.queue[0]
		m.mu.Unlock()
		if !m.hand(it) {
			return
		}
		if m.taken != nil {
			m.taken(it)
		}
		m.mu.Lock()
		if !m.closed {
			m.queue[0] = item{} // let the message's strings go
			m.queue = m.queue[1:]
		}
		m.mu.Unlock()
	}
}

// hand gives it to the user, or reports false once the mailbox is closed.
func (m *mailbox) hand(it item) bool {
	if it.err != nil {
		select {
		case m.errs <- it.err:
			return true
		case <-m.quit:
			return false
		}
	}
	select {
	case m.msgs <- it.msg:
		return true
	case <-m.quit:
		return false
	}
}
