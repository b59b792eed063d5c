package client

import (
	"sync"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// mailbox is an unbounded FIFO in front of a channel, so the client's reader
// never waits for its user.
type mailbox struct {
	out    chan protocol.Message
	mu     sync.Mutex
	queue  []protocol.Message
	wake   chan struct{}
	closed bool
}

func newMailbox() *mailbox {
	m := &mailbox{out: make(chan protocol.Message), wake: make(chan struct{}, 1)}
	go m.pump()
	return m
}

func (m *mailbox) put(msg protocol.Message) {
	m.mu.Lock()
	m.queue = append(m.queue, msg)
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// pump hands queued messages to out; out is closed once the mailbox is
// closed and empty.
func (m *mailbox) pump() {
	for {
		m.mu.Lock()
		batch, closed := m.queue, m.closed
		m.queue = nil
		m.mu.Unlock()
		for _, msg := range batch {
			m.out <- msg
		}
		if len(batch) == 0 {
			if closed {
				close(m.out)
				return
			}
			<-m.wake
		}
	}
}
