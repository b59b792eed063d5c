package server

import "time"

// ticks runs the sessions' ticks (the ping, the token's expiry, the silent
// client: session.tick) from one goroutine that looks at every session each
// tickEvery, until stop closes. A runtime timer per session cost 112 bytes
// and a slot in the runtime's timer heap, on every idle connection
// (docs/internals.md); a look at 10,000 sessions takes well under a
// millisecond.
func (s *Server) ticks(stop <-chan struct{}) {
	t := time.NewTicker(tickEvery(s.cfg.PingInterval))
	defer t.Stop()
	var due []*session
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := int64(time.Since(epoch))
		s.mu.Lock()
		for sess := range s.sessions {
			if at := sess.due.Load(); at != 0 && at <= now {
				due = append(due, sess)
			}
		}
		s.mu.Unlock()
		for _, sess := range due {
			sess.tick()
		}
		clear(due) // ended sessions must not stay reachable from here
		due = due[:0]
	}
}

// tickEvery is how late a tick may come: a quarter of the ping interval, a
// second at most (a token's expiry is enforced that closely).
func tickEvery(ping time.Duration) time.Duration {
	return max(time.Millisecond, min(time.Second, ping/4))
}
