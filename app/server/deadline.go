package server

import (
	"context"
	"sync"
	"time"
)

// sharedDeadline hands the sends that start within the same step one
// context, ending at least d and at most d+step after each of them began.
// A context of its own per send (a timer, the context and its Done channel,
// some 300 bytes) was one of the larger shares of the bytes a message
// allocates, and the bytes a message allocates set how often the collector
// runs (docs/log.md, 2026-12-06).
type sharedDeadline struct {
	d, step time.Duration

	mu  sync.Mutex
	ctx context.Context
	end time.Time // ctx's deadline
}

// at returns a context that ends between now+d and now+d+step. Nothing
// cancels it early: a send that returns leaves it to the others.
func (s *sharedDeadline) at(now time.Time) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.end.Before(now.Add(s.d)) {
		s.end = now.Add(s.d + s.step)
		ctx, cancel := context.WithDeadline(context.Background(), s.end)
		context.AfterFunc(ctx, cancel) // its timer releases it at the deadline
		s.ctx = ctx
	}
	return s.ctx
}
