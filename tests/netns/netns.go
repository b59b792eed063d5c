// Package netns runs processes and opens connections in a network namespace
// of their own, which has only a loopback: a test can start a program on its
// fixed ports (as a user on a fresh machine would) whatever else this machine
// listens on.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNotAllowed is New's error where namespaces are not allowed (no
// CAP_SYS_ADMIN, as in a container started without it).
var ErrNotAllowed = errors.New("creating a network namespace is not allowed here")

// Namespace is a network namespace; a nil *Namespace is this process's own.
type Namespace struct{ fd int }

// New creates a namespace with its loopback up. Close releases it once no
// process runs in it any more.
func New() (*Namespace, error) {
	ns := &Namespace{fd: -1}
	var err error
	onOwnThread(func() {
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w: %w", ErrNotAllowed, err)
			}
			return
		}
		if err = loopbackUp(); err != nil {
			return
		}
		ns.fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return ns, nil
}

// Close releases the namespace's handle.
func (ns *Namespace) Close() error {
	if ns == nil {
		return nil
	}
	return unix.Close(ns.fd)
}

// loopbackUp brings up lo, which a new namespace has down.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// Do runs f on a thread in the namespace: the processes f starts (os/exec
// forks from the calling thread) and the sockets it opens live there.
func (ns *Namespace) Do(f func()) error {
	if ns == nil {
		f()
		return nil
	}
	var err error
	onOwnThread(func() {
		if err = unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("enter the network namespace: %w", err)
			return
		}
		f()
	})
	return err
}

// DialContext connects from inside the namespace (for http.Transport and
// websocket.Dialer). Without fast fallback the dialer opens every socket on
// the calling goroutine, so on the namespace's thread.
func (ns *Namespace) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	if nsErr := ns.Do(func() { c, err = (&net.Dialer{FallbackDelay: -1}).DialContext(ctx, network, addr) }); nsErr != nil {
		return nil, nsErr
	}
	return c, err
}

// onOwnThread runs f on an OS thread of its own, which ends with it: a
// thread that entered another namespace never runs anything else.
func onOwnThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the runtime ends the thread with the goroutine (the
		// main thread, which cannot end, it parks for good).
		runtime.LockOSThread()
		f()
	}()
	<-done
}
