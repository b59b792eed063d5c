//go:build !linux

package netpoll

import "errors"

// Poller needs epoll: the chat server runs on Linux.
type Poller struct{}

// Watch is one socket in a Poller.
type Watch struct{}

func New() (*Poller, error) { return nil, errors.New("netpoll: epoll is Linux only") }

func (p *Poller) Watch(fd int, ready func()) (*Watch, error) { return nil, ErrStopped }
func (w *Watch) Arm() error                                  { return ErrStopped }
func (w *Watch) Stop() error                                 { return ErrStopped }
func (p *Poller) Err() error                                 { return nil }
func (p *Poller) Close() error                               { return nil }
