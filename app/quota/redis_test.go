package quota

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
)

// redisServer is a redis-server of the test's own (chattest.StartRedis).
type redisServer struct {
	*local.Redis
	t testing.TB
}

func startRedis(t testing.TB) redisServer {
	t.Helper()
	return redisServer{chattest.StartRedis(t), t}
}

// client is a client to the server, closed when the test ends.
func (r redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// errCount counts a Limiter's reported errors.
type errCount struct{ n atomic.Int64 }

func (e *errCount) add(error) { e.n.Add(1) }

// run runs l until the test ends (or the returned cancel).
func run(t testing.TB, l *Limiter) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// freshWindow waits until the current window of per has at least need
// left, so a test's events fall in one window.
func freshWindow(per, need time.Duration) time.Time {
	now := time.Now()
	left := per - time.Duration(now.UnixNano()%int64(per))
	if left < need {
		time.Sleep(left + time.Millisecond)
	}
	return time.Now()
}
