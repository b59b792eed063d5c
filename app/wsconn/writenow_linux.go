package wsconn

import (
	"syscall"
	"unsafe"
)

// writeNow writes b to the non-blocking socket fd. A raw system call: the
// socket never makes it wait, so the scheduler need not know of it.
func writeNow(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
