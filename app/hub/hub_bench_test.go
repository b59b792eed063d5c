package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// The benchmark measures the hub's own fan-out cost, so Redis is replaced by
// an in-memory bus that confirms subscriptions at once.
type memBus struct{ h *Hub }

func (b *memBus) Add(_ context.Context, rooms ...string) error {
	for _, r := range rooms {
		go b.h.Subscribed(r)
	}
	return nil
}
func (b *memBus) Remove(context.Context, ...string) error { return nil }
func (b *memBus) Latest(context.Context, string) (protocol.Position, error) {
	return protocol.Position{}, nil
}
func (b *memBus) Range(context.Context, string, int64, int64, int) ([]protocol.Delivery, error) {
	return nil, nil
}
func (b *memBus) Pending(context.Context, string, int64, int64) ([]protocol.Delivery, error) {
	return nil, nil
}

// chanMember drains its queue like a session's writer would.
type chanMember struct {
	q       chan *protocol.Delivery
	dropped *atomic.Int64
}

func (m chanMember) Deliver(d *protocol.Delivery) bool {
	select {
	case m.q <- d:
		return true
	default:
		m.dropped.Add(1)
		return false
	}
}
func (m chanMember) Catchup([]*protocol.Delivery) bool { return true }
func (m chanMember) Drained(context.Context) error     { return nil }
func (m chanMember) Close(int, string)                 {}

func BenchmarkFanOut(b *testing.B) {
	for _, members := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			bus := &memBus{}
			h := New(bus, bus, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
			bus.h = h
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var dropped atomic.Int64
			for i := 0; i < members; i++ {
				m := chanMember{q: make(chan *protocol.Delivery, b.N+1), dropped: &dropped} // room for every message: the figure is the hub's cost, not a consumer's
				if _, err := h.Join(context.Background(), m, "lobby", nil); err != nil {
					b.Fatal(err)
				}
				<-m.q // the joined frame
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-m.q:
						case <-stop:
							return
						}
					}
				}()
			}
			frame := protocol.Message{Room: "lobby", User: "alice", Text: "hello, room", TS: time.Now()}.Frame()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Dispatch(&protocol.Delivery{Room: "lobby", Seq: int64(i + 1), Frame: frame, Accepted: time.Now()})
			}
			b.StopTimer()
			delivered := int64(b.N*members) - dropped.Load()
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(float64(dropped.Load())/float64(b.N*members), "dropped/delivery")
			close(stop)
			wg.Wait()
		})
	}
}
