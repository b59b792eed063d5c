package broker

import (
	"context"
	"sync"
)

// memLedger keeps reservations in the process: the default for tests that
// never lose Redis's data, where nothing needs to survive the broker.
type memLedger struct {
	mu    sync.Mutex
	his   map[string]int64
	fence int64
}

func (l *memLedger) Fence(context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fence++
	return l.fence, nil
}

func (l *memLedger) ReserveSeqs(_ context.Context, room string, atLeast, n int64, _ bool) (int64, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.his == nil {
		l.his = map[string]int64{}
	}
	prev, reused := l.his[room]
	l.his[room] = max(prev, atLeast) + n
	return l.his[room], reused || atLeast > 0, nil
}

func (l *memLedger) SentSeq(context.Context, string, string, string) (int64, bool, error) {
	return 0, false, nil
}
