package tests

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// latencies records accept-to-receive times of messages read by watchers,
// into whichever phase is current.
type latencies struct {
	mu     sync.Mutex
	phases [][]time.Duration
}

func (l *latencies) watch(c *client.Client, stop <-chan struct{}) {
	for {
		select {
		case m := <-c.Messages():
			d := time.Since(m.TS)
			l.mu.Lock()
			l.phases[len(l.phases)-1] = append(l.phases[len(l.phases)-1], d)
			l.mu.Unlock()
		case <-stop:
			return
		}
	}
}

func (l *latencies) next() {
	l.mu.Lock()
	l.phases = append(l.phases, nil)
	l.mu.Unlock()
}

// A member that stops reading is closed, and the room's other members see
// no added latency beyond a bound.
func slowConsumer(t *testing.T, s *suite) {
	room := chattest.Room()
	watchers := s.onEveryInstance(t, "watch", 800)
	for _, c := range watchers {
		chattest.Join(t, c, room)
	}
	senders := s.members(t, "flood", room, 850, 10)
	lat := &latencies{}
	lat.next()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range append(watchers, senders...) {
		wg.Add(1)
		go func() { defer wg.Done(); lat.watch(c, stop) }()
	}
	defer func() { close(stop); wg.Wait() }()
	// 10 senders × 15 msgs/s × 3.5 KB: 150 messages and 0.5 MB a second.
	ld := startLoad(room, senders, 66*time.Millisecond, 3500)
	time.Sleep(3 * time.Second) // the baseline phase

	slowBefore := s.slowConsumers(t)
	lat.next()
	began := time.Now()
	// The slow member joins and then never reads; its tiny receive buffer
	// makes the writes towards it block soon.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.source(899)}}
		c, err := nd.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	slow, _, err := d.Dial(s.wsURL+"?token="+s.token(t, "slow", time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room})
	until(t, "the slow consumer is closed", 2*time.Minute, func() error {
		if n := s.slowConsumers(t); n <= slowBefore {
			return errorf("chat_slow_consumers_total still %v", n)
		}
		return nil
	})
	closedAfter := time.Since(began)
	lat.next()
	time.Sleep(2 * time.Second) // after the close
	acked, _ := ld.Stop()

	lat.mu.Lock()
	base, during, after := lat.phases[0], lat.phases[1], lat.phases[2]
	lat.mu.Unlock()
	p99 := func(ds []time.Duration) time.Duration { return quantile(ds, 0.99) }
	const bound = 250 * time.Millisecond
	if p99(during) > p99(base)+bound {
		t.Errorf("p99 while a member was slow %s, baseline %s: more than %s added", p99(during), p99(base), bound)
	}
	report.Logf(t, "slow consumer: closed %s after it stopped reading (%d messages of 3.5 KB sent in all); other members' delivery latency: baseline %s; while slow %s; after %s; bound on added p99 %s",
		closedAfter.Round(time.Millisecond), len(acked), percentiles(base), percentiles(during), percentiles(after), bound)
}

// slowConsumers sums chat_slow_consumers_total over the instances.
func (s *suite) slowConsumers(t *testing.T) float64 {
	var n float64
	for _, in := range s.instances(t) {
		n += chattest.Metric(t, in.URL, "chat_slow_consumers_total")
	}
	return n
}
