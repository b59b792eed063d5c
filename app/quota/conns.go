package quota

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Refusals of Open: the quota names of docs/abuse.md (protocol.Quota*).
const (
	UserConnections    = "user_connections"
	AddressConnections = "address_connections"
)

var (
	//go:embed open.lua
	openSource string
	openScript = redis.NewScript(openSource)
	//go:embed release.lua
	releaseSource string
	releaseScript = redis.NewScript(releaseSource)
	//go:embed heartbeat.lua
	heartbeatSource string
	heartbeatScript = redis.NewScript(heartbeatSource)
)

func noRelease() {}

// Open counts a connection of user from addr across instances, in one round
// trip, unless the user already has maxUser open connections (refused is
// UserConnections) or the address maxAddr (AddressConnections); a max of 0
// is no limit, and with both 0 Open does not touch Redis. Only incarnations
// that heartbeat (Run) within Stale count, so the connections of an instance
// that crashed stop counting once it has been silent for Stale.
//
// release, never nil, uncounts the connection; calling it again does
// nothing. It waits for Redis (up to about a second), so a caller that must
// not wait runs it in a goroutine. When Redis cannot be reached err says so
// and nothing was counted: the caller fails open (admits, docs/abuse.md),
// and release is a no-op.
func (l *Limiter) Open(ctx context.Context, user, addr string, maxUser, maxAddr int) (release func(), refused string, err error) {
	if maxUser <= 0 && maxAddr <= 0 {
		return noRelease, "", nil
	}
	keys := []string{incarnationsKey, userConnsKey(user), addrConnsKey(addr)}
	res, err := openScript.Run(ctx, l.rdb, keys, l.incarnation, l.opts.Stale.Milliseconds(),
		max(maxUser, 0), max(maxAddr, 0), connTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return noRelease, "", fmt.Errorf("open connection of %q from %s: %w", trim(user), addr, err)
	}
	if len(res) != 3 {
		return noRelease, "", fmt.Errorf("open connection of %q from %s: reply %v", trim(user), addr, res)
	}
	switch res[0] {
	case 1:
		return noRelease, UserConnections, nil
	case 2:
		return noRelease, AddressConnections, nil
	}
	c := &counted{l: l, user: user, addr: addr}
	return c.release, "", nil
}

// counted is one connection Open counted: it is all an idle connection
// holds of the quota, so it keeps the two names, not the keys made of them.
type counted struct {
	l          *Limiter
	user, addr string
	released   atomic.Bool
}

// release uncounts the connection, the first time it is called.
func (c *counted) release() {
	if c.released.Swap(true) {
		return
	}
	// Not the caller's context: the connection's is likely done.
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	keys := []string{userConnsKey(c.user), addrConnsKey(c.addr)}
	if err := releaseScript.Run(ctx, c.l.rdb, keys, c.l.incarnation).Err(); err != nil {
		// Left counted until the hashes expire or this incarnation goes
		// stale.
		c.l.fail(fmt.Errorf("release connection of %q from %s: %w", trim(c.user), c.addr, err))
	}
}

// heartbeat marks this incarnation alive and forgets long dead ones.
func (l *Limiter) heartbeat(run context.Context) {
	if run.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(run, min(redisTimeout, l.opts.Stale))
	defer cancel()
	err := heartbeatScript.Run(ctx, l.rdb, []string{incarnationsKey}, l.incarnation, forgetAfter.Milliseconds()).Err()
	if err != nil && run.Err() == nil { // not an error to stop
		l.fail(fmt.Errorf("heartbeat of %s: %w", l.incarnation, err))
	}
}

// trim keeps a user name fit for an error message.
func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}
