package server

import (
	"testing"
	"time"
)

// Each send gets at least the full bound and at most a step more, and the
// sends of one step share a context.
func TestSendsOfOneStepShareADeadlineNoEarlierThanTheirOwn(t *testing.T) {
	s := sharedDeadline{d: 3 * time.Second, step: 100 * time.Millisecond}
	start := time.Now()
	first := s.at(start)
	for _, after := range []time.Duration{0, 40 * time.Millisecond, 100 * time.Millisecond, 101 * time.Millisecond, 250 * time.Millisecond} {
		now := start.Add(after)
		ctx := s.at(now)
		end, ok := ctx.Deadline()
		if !ok || end.Before(now.Add(s.d)) || end.After(now.Add(s.d+s.step)) {
			t.Fatalf("a send at +%v got deadline %v after its start, want %v to %v", after, end.Sub(now), s.d, s.d+s.step)
		}
		if shared := ctx == first; shared != (after <= s.step) {
			t.Errorf("a send at +%v shares the first send's context: %v, want %v", after, shared, after <= s.step)
		}
	}
}
