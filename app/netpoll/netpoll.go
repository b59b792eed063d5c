// Package netpoll tells when sockets become readable without a goroutine
// waiting on each: one epoll set and one goroutine serve them all. A server
// that keeps a goroutine per idle connection pays its 2 KiB stack and more
// for every client that says nothing for hours.
//
// Each watch is one-shot: it reports readiness once, then not again until
// it is re-armed, so the reader that handles a report owns the socket until
// it arms the watch again.
package netpoll

import "errors"

// ErrStopped is returned for a watch that was stopped or a poller that was
// closed.
var ErrStopped = errors.New("netpoll: stopped")
