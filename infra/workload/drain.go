package workload

import (
	"math"
	"time"
)

// flushMargin is the time left after the drain for the instance to flush
// its last writes and exit before Kubernetes sends SIGKILL.
const flushMargin = 10 * time.Second

// Drain is how a server pod leaves: the preStop sleep lets endpoints and load
// balancers stop sending it new clients, then SIGTERM turns it unready; it
// keeps serving for Delay and closes its connections spread over Timeout.
type Drain struct {
	PreStop, Delay, Timeout time.Duration
}

// Window is the time from the start of a pod's termination to its last
// connection closing: what a load balancer's deregistration delay must cover.
func (d Drain) Window() time.Duration { return d.PreStop + d.Delay + d.Timeout }

// Grace is terminationGracePeriodSeconds: the window plus the flush margin,
// so that SIGKILL never cuts a drain short.
func (d Drain) Grace() time.Duration { return d.Window() + flushMargin }

func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
