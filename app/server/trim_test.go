package server

import (
	"testing"
	"time"
)

// The trimmer frees memory once per burst of connections, after the burst,
// and not more often than its interval; connections short of a burst never
// trigger it.
func TestTrimmerFreesOnceABurstIsOver(t *testing.T) {
	freed := make(chan time.Time, 10)
	tr := &trimmer{burst: 100, quiet: 50 * time.Millisecond, every: 500 * time.Millisecond, free: func() { freed <- time.Now() }}
	noneWithin := func(what string, d time.Duration) {
		t.Helper()
		select {
		case <-freed:
			t.Fatalf("%s: freed", what)
		case <-time.After(d):
		}
	}
	for range 99 {
		tr.connected()
	}
	noneWithin("99 connections, short of a burst", 10*tr.quiet)

	// The burst's last connection resets the wait: freed no sooner than
	// quiet after it, however the machine schedules.
	lastConnect := time.Now()
	tr.connected()
	var at time.Time
	select {
	case at = <-freed:
	case <-time.After(time.Minute):
		t.Fatal("a burst of 100 connections: never freed")
	}
	if at.Before(lastConnect.Add(tr.quiet)) {
		t.Errorf("freed %v after the last connection, before the burst had been quiet for %v", at.Sub(lastConnect), tr.quiet)
	}
	noneWithin("once per burst", 5*tr.quiet)

	// The next burst comes soon after: freed only once every has passed.
	for range 100 {
		tr.connected()
	}
	var again time.Time
	select {
	case again = <-freed:
	case <-time.After(time.Minute):
		t.Fatal("a second burst: never freed")
	}
	if again.Sub(at) < tr.every {
		t.Errorf("freed again %v after the first time, want at least %v apart", again.Sub(at), tr.every)
	}
}
