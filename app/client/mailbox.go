package client

import "sync"

// mailbox is an unbounded FIFO in front of a channel, so the client's reader
// never waits for its user.
type mailbox[T any] struct {
	out    chan T
	mu     sync.Mutex
	queue  []T
	wake   chan struct{}
	closed bool
}

func newMailbox[T any]() *mailbox[T] {
	m := &mailbox[T]{out: make(chan T), wake: make(chan struct{}, 1)}
	go m.pump()
	return m
}

func (m *mailbox[T]) put(v T) {
	m.mu.Lock()
	m.queue = append(m.queue, v)
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox[T]) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox[T]) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// pump hands queued values to out; out is closed once the mailbox is closed
// and empty.
func (m *mailbox[T]) pump() {
	for {
		m.mu.Lock()
		batch, closed := m.queue, m.closed
		m.queue = nil
		m.mu.Unlock()
		for _, v := range batch {
			m.out <- v
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
