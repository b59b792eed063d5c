package store

// ReserveStatements counts the reservation statements run so far, and
// ReserveQueued the reservations waiting for one.
func (s *Store) ReserveStatements() int64 {
	s.res.mu.Lock()
	defer s.res.mu.Unlock()
	return s.res.statements
}

func (s *Store) ReserveQueued() int {
	s.res.mu.Lock()
	defer s.res.mu.Unlock()
	return len(s.res.queue)
}
