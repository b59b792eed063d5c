// Package target is how the behaviour suite reaches a deployment of
// Switchboard: the load balancer's endpoint, the instances behind it and the
// few operations the scenarios need. The local target implements it with
// processes; the kind and AWS targets implement it with the Kubernetes API.
package target

import (
	"context"
	"errors"
	"time"
)

// ErrNoNodes is DrainNode's answer on a target whose instances run on no
// nodes it can drain (the local target's processes).
var ErrNoNodes = errors.New("the target has no nodes to drain")

// Instance is one chat server behind the load balancer.
type Instance struct {
	ID  string // its INSTANCE_ID, as in the welcome frame
	URL string // a base URL that reaches it directly, for /health, /ready and /metrics
}

// Target is a running deployment the suite may disturb. Every method that
// changes it returns once the change has taken effect.
type Target interface {
	// Endpoint is the load balancer's base URL (http or https); clients use Endpoint+"/ws".
	Endpoint() string
	// Origin is a browser origin the deployment allows.
	Origin() string
	// Token mints a JWT for user that expires after ttl (negative: already expired).
	Token(user string, ttl time.Duration) (string, error)
	// Instances lists the instances behind the load balancer.
	Instances(ctx context.Context) ([]Instance, error)

	// Kill ends the instance at once (SIGKILL, no drain) and returns when it is gone.
	Kill(ctx context.Context, id string) error
	// Start brings a killed instance back and returns when it is ready.
	Start(ctx context.Context, id string) error
	// RollingUpdate replaces every instance the way a new version rolls out
	// (each drained gracefully, the next once its replacement is ready) and
	// returns when all are ready, with each instance's drain where the target
	// measures it.
	RollingUpdate(ctx context.Context) (drains []time.Duration, err error)
	// DrainNode drains the node that holds the most instances, as node
	// maintenance does (cordon, evict under the disruption budget), waits for
	// every instance to be available elsewhere, makes the node schedulable
	// again and returns its name; ErrNoNodes where there are none.
	DrainNode(ctx context.Context) (string, error)

	StopRedis(ctx context.Context) error
	StartRedis(ctx context.Context) error
	StopPostgres(ctx context.Context) error
	StartPostgres(ctx context.Context) error
}
