//go:build !linux

package wsconn

import "syscall"

// writeNow writes b to the non-blocking socket fd.
func writeNow(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
