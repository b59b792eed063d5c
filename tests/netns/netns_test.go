package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A port taken on this machine is free in the namespace; a connection dialed
// through the namespace reaches its listener, not the machine's; and a
// process started in it sees the namespace's network.
func TestANamespaceHasItsOwnPortsAndProcesses(t *testing.T) {
	ns, err := New()
	if errors.Is(err, ErrNotAllowed) {
		t.Skipf("this machine allows no network namespace: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	addr := host.Addr().String()
	var inside net.Listener
	if nsErr := ns.Do(func() { inside, err = net.Listen("tcp", addr) }); nsErr != nil || err != nil {
		t.Fatalf("listen on %s, taken on the machine, inside the namespace: %v %v", addr, nsErr, err)
	}
	defer inside.Close()
	go serve(inside, "inside")
	go serve(host, "host")

	for _, c := range []struct {
		name string
		dial func(ctx context.Context, network, addr string) (net.Conn, error)
		want string
	}{
		{"through the namespace", ns.DialContext, "inside"},
		{"from the machine", (&net.Dialer{}).DialContext, "host"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := c.dial(ctx, "tcp", addr)
		cancel()
		if err != nil {
			t.Fatalf("dial %s %s: %v", addr, c.name, err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != c.want {
			t.Errorf("dialed %s, reached %q (%v), want %q", c.name, got, err, c.want)
		}
	}

	// Processes, which a thread of this test may not be (the runtime keeps a
	// main thread that entered the namespace instead of ending it).
	netOf := func(in *Namespace) string {
		var out []byte
		if nsErr := in.Do(func() { out, err = exec.Command("readlink", "/proc/self/ns/net").Output() }); nsErr != nil || err != nil {
			t.Fatalf("readlink /proc/self/ns/net: %v %v", nsErr, err)
		}
		return strings.TrimSpace(string(out))
	}
	if inside, outside := netOf(ns), netOf(nil); inside == outside || !strings.HasPrefix(inside, "net:") {
		t.Errorf("a process started in the namespace is in %q, one started outside in %q", inside, outside)
	}
}

// serve answers each connection with name, then closes it.
func serve(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(name))
		c.Close()
	}
}
