package wsconn

import (
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
)

// checkedGorilla is the gorilla/websocket version this package's assumptions
// were checked against, in its source and by the tests beside this one.
const checkedGorilla = "v1.5.4-0.20250319132907-e064f32e3674"

const gorilla = "github.com/gorilla/websocket"

// TestGorillaVersion fails on any other gorilla version, so that an upgrade
// is a deliberate step: re-verify, then change checkedGorilla.
func TestGorillaVersion(t *testing.T) {
	v := linkedVersion(t)
	if v == checkedGorilla {
		return
	}
	t.Fatalf(`%s is %s; app/wsconn relies on gorilla's internals as of %s.
Before changing checkedGorilla in app/wsconn/version_test.go, re-verify in the new version's source
and with this package's tests (go test -race ./app/wsconn):
  - server.go, Upgrader.Upgrade: with ReadBufferSize 0 it adopts the hijacked *bufio.Reader when its
    Size() is over 256 (ReadBufferSize here is %d) and reads every frame through it, allocating no
    reader of its own (TestGorillaAdoptsReadBuffer);
  - conn.go, advanceFrame: a masked FIN ping or pong of at most 125 bytes is consumed whole and its
    unmasked payload passed to the ping or pong handler, with no other state changed, and after a
    control frame NextReader goes on waiting for a data frame (TestSkipControl);
  - conn.go: PingHandler still returns the handler that SetPingHandler set (the default answers
    with a pong through WriteControl, which may run beside the writer);
  - conn.go, Conn.write and WriteMessage: each frame is written with Write or net.Buffers.WriteTo on
    the net.Conn that Hijack returned, after SetWriteDeadline (TestHoldCoalesces);
  - conn.go: PongHandler still returns the handler that SetPongHandler set.`,
		gorilla, v, checkedGorilla, ReadBufferSize)
}

// linkedVersion is the gorilla version linked with this package, from
// runtime/debug.ReadBuildInfo. A test binary records no module versions, so
// unless a later Go records them it is read from a binary built for it.
func linkedVersion(t *testing.T) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != gorilla {
				continue
			}
			if d.Replace != nil {
				return d.Replace.Version + "(replaced by " + d.Replace.Path + ")"
			}
			return d.Version
		}
	}
	out, err := exec.Command("go", "run", "./testdata/buildinfo").Output()
	if err != nil {
		t.Fatalf("reading the build information of a binary linking app/wsconn (go run ./testdata/buildinfo): %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if path, version, ok := strings.Cut(strings.TrimSpace(line), " "); ok && path == gorilla {
			return version
		}
	}
	t.Fatalf("%s is not in the build information of a binary linking app/wsconn:\n%s", gorilla, out)
	return ""
}
