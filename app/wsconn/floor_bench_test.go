package wsconn

import (
	"bytes"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoopbackDelivery is the floor under the direct scenarios' figures
// (docs/performance.md): what one delivery costs the kernel when the server
// and its clients share a host, as they do in `make bench`. A 64-byte
// message, framed by AppendText, is written to each of 1,000 loopback
// sockets in turn while a goroutine per socket reads, as the load tool's
// pollers do. cpu-µs/delivery is the process's user and system time for both
// ends; a server can add to it but cannot go below it on one host.
func BenchmarkLoopbackDelivery(b *testing.B) {
	const sockets = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var readers sync.WaitGroup
	servers := make([]*net.TCPConn, sockets)
	for i := range servers {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer server.Close()
		servers[i] = server.(*net.TCPConn)
		readers.Go(func() { io.Copy(io.Discard, client) })
	}
	frame := AppendText(nil, bytes.Repeat([]byte("x"), 64))
	before := cpuTime(b)
	n := 0
	for b.Loop() {
		if _, err := servers[n%sockets].Write(frame); err != nil {
			b.Fatal(err)
		}
		n++
	}
	// Every frame read, then the time both ends took.
	for _, s := range servers {
		s.CloseWrite()
	}
	readers.Wait()
	b.ReportMetric(float64((cpuTime(b)-before).Nanoseconds())/1e3/float64(n), "cpu-µs/delivery")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
