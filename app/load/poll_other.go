//go:build !linux

package load

import (
	"errors"
	"net"
)

// Without epoll every connection is read by a goroutine of its own.
type poller struct{}

type fdConn struct{}

func newPoller() (*poller, error) { return nil, nil }

func (p *poller) add(*conn, *fdConn) error { return errors.New("no poller") }

func (p *poller) close() error { return nil }

func detach(*net.TCPConn) (*fdConn, error) { return nil, errors.New("no poller") }

func (*fdConn) Read([]byte) (int, error) { return 0, errors.New("no poller") }

func (*fdConn) Write([]byte) (int, error) { return 0, errors.New("no poller") }

func (*fdConn) Close() error { return nil }
