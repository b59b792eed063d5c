package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/tests/netns"
)

// Issue 28, "Proof": a fresh clone of the committed HEAD follows the
// README's quickstart literally. The commands are read from README.md's
// Quickstart section (its fenced block, and the make commands its prose
// tells the reader to run), so that a change to them is tested as written.
// The clone uses this machine's Go module and build caches and
// ~/.cache/switchboard (HOME is inherited), so it is fast when they are warm.
func TestQuickstartInAFreshClone(t *testing.T) {
	began := time.Now()
	clone := cloneHEAD(t)
	readme, err := os.ReadFile(filepath.Join(clone, "README.md")) // as committed
	if err != nil {
		t.Fatal(err)
	}
	cmds := quickstartCommands(t, string(readme))
	if !slices.ContainsFunc(cmds, func(c string) bool { return bare(c) == "make up" }) {
		t.Fatalf("README.md's Quickstart has no `make up` among its commands %q", cmds)
	}
	report.Logf(t, "quickstart: cloned HEAD into %s in %s; commands %q", clone, time.Since(began).Round(time.Millisecond), cmds)

	ns := newNetns(t)
	if ns != nil {
		// The namespace has no route out: fetch the modules (from the cache when
		// warm) before make builds in it.
		run(t, nil, clone, "go", "mod", "download")
	}
	// make up runs first: the other commands need the target it starts.
	slices.SortStableFunc(cmds, func(a, b string) int {
		return boolInt(bare(b) == "make up") - boolInt(bare(a) == "make up")
	})
	var up *makeUp
	chatted := false
	for _, c := range cmds {
		switch cmd := bare(c); {
		case cmd == "make up":
			up = startMakeUp(t, ns, clone, c)
		case strings.HasPrefix(cmd, "git clone "):
			// Tests have no network: the clone of this checkout above stands in
			// for it, so the command must clone this module's repository and
			// enter it under the clone's name.
			if want := "git clone https://" + modulePath + " && cd " + filepath.Base(clone); cmd != want {
				t.Errorf("README.md's Quickstart clones with %q, want %q", cmd, want)
			}
		case cmd == "make test":
			// Running the whole suite from inside the suite would recurse; the
			// clone must resolve it as a target, with the suite among its steps.
			out := run(t, nil, clone, "make", "-n", "test")
			if !strings.Contains(out, "go test") {
				t.Errorf("make -n test in the clone runs no go test:\n%s", out)
			}
		case strings.HasPrefix(cmd, "make token"):
			tok := lastLine(run(t, ns, clone, "bash", "-c", c))
			up.chat(t, ns, tok)
			chatted = true
		default:
			t.Fatalf("README.md's Quickstart names %q, which this test does not follow yet: add its step", c)
		}
	}
	if !chatted { // two browsers as alice, then
		up.chat(t, ns, up.token)
	}
	up.stop(t)
	report.Logf(t, "quickstart: clone, make up, chat and stop took %s", time.Since(began).Round(time.Millisecond))
}

// quickstartCommands are the commands of README.md's Quickstart section: each
// line of its fenced blocks as written (comments included), then each
// `make ...` code span of its prose not already among them.
func quickstartCommands(t *testing.T, readme string) []string {
	_, section, ok := strings.Cut(readme, "\n## Quickstart\n")
	if !ok {
		t.Fatal("README.md has no Quickstart section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmds []string
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			if line = strings.TrimSpace(line); line != "" {
				cmds = append(cmds, line)
			}
		}
	}
	// A code span may wrap onto the next line (CommonMark reads the break as a space).
	for _, m := range codeSpan.FindAllStringSubmatch(fence.ReplaceAllString(section, ""), -1) {
		span := strings.Join(strings.Fields(m[1]), " ")
		if strings.HasPrefix(span, "make ") && !slices.ContainsFunc(cmds, func(c string) bool { return bare(c) == span }) {
			cmds = append(cmds, span)
		}
	}
	return cmds
}

var (
	fence    = regexp.MustCompile("(?ms)^```[^\n]*\n(.*?)^```")
	codeSpan = regexp.MustCompile("`([^`]+)`")
	pageLink = regexp.MustCompile(`Try it in a browser: (http://\S+)/#token=(\S+)`)
)

// bare is a command without its comment.
func bare(cmd string) string {
	before, _, _ := strings.Cut(cmd, "#")
	return strings.Join(strings.Fields(before), " ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cloneHEAD clones the repository's committed HEAD, as a new user would get it.
func cloneHEAD(t *testing.T) string {
	root := strings.TrimSpace(run(t, nil, "..", "git", "rev-parse", "--show-toplevel"))
	dir := filepath.Join(t.TempDir(), "switchboard")
	run(t, nil, "", "git", "clone", "--quiet", root, dir)
	head := strings.TrimSpace(run(t, nil, root, "git", "rev-parse", "HEAD"))
	if got := strings.TrimSpace(run(t, nil, dir, "git", "rev-parse", "HEAD")); got != head {
		t.Fatalf("the clone is at %s, HEAD is %s", got, head)
	}
	return dir
}

// run runs a command to its end in dir (in ns, if not nil) and returns its output.
func run(t *testing.T, ns *netns.Namespace, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, userEnv()
	var out []byte
	var err error
	inNetns(t, ns, func() { out, err = cmd.CombinedOutput() })
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// userEnv is this environment as a user's shell has it: without the
// variables through which the make running `make test` (when it does)
// passes its flags and job slots to the makes below it.
func userEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains([]string{"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}, name)
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// makeUp is the README's `make up`, running, as a user's terminal runs it:
// the foreground process group of a session of its own.
type makeUp struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	link    string // the chat page, as printed
	token   string // alice's, as printed
	stopped bool
}

func startMakeUp(t *testing.T, ns *netns.Namespace, clone, line string) *makeUp {
	began := time.Now()
	up := &makeUp{cmd: exec.Command("bash", "-c", line), out: &syncBuffer{}, exited: make(chan struct{})}
	up.cmd.Dir, up.cmd.Env = clone, userEnv()
	up.cmd.Stdout, up.cmd.Stderr = up.out, up.out
	up.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	up.cmd.WaitDelay = 10 * time.Second // a child holding the output pipe does not hang Wait
	var err error
	inNetns(t, ns, func() { err = up.cmd.Start() })
	if err != nil {
		t.Fatalf("start %q: %v", line, err)
	}
	go func() { up.cmd.Wait(); close(up.exited) }()
	// Whatever happens to the test, nothing it started outlives it.
	t.Cleanup(func() {
		for _, p := range processesOf(up.cmd.Process.Pid) {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		<-up.exited
	})
	// Ready when it prints the chat page's link, its last line before "Ctrl-C stops everything".
	until(t, "make up prints the chat page's link", 10*time.Minute, func() error {
		if m := pageLink.FindStringSubmatch(up.out.String()); m != nil {
			up.link, up.token = m[1], m[2]
			return nil
		}
		select {
		case <-up.exited:
			t.Fatalf("make up ended (%v) before the target was up:\n%s", up.cmd.ProcessState, up.out)
		default:
		}
		return errorf("no link printed yet")
	})
	report.Logf(t, "quickstart: make up served %s after %s", up.link, time.Since(began).Round(time.Millisecond))

	// The page the link opens.
	client := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}, Timeout: 10 * time.Second}
	resp, err := client.Get(up.link + "/")
	if err != nil {
		t.Fatalf("the chat page: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(`id="text"`)) {
		t.Fatalf("the chat page %s: %s, want 200 and the message box:\n%.300s", up.link, resp.Status, page)
	}
	return up
}

// chat is what the README has the reader do with two browsers: alice with
// the printed token and a second page with other (the token of `make
// token`), both through NGINX as the page connects, say a line each, and
// each sees the other's.
func (up *makeUp) chat(t *testing.T, ns *netns.Namespace, other string) {
	began := time.Now()
	alice, bob := up.dial(t, ns, up.token, "alice"), up.dial(t, ns, other, "")
	for _, c := range []*websocket.Conn{alice, bob} {
		send(t, c, protocol.ClientFrame{Op: protocol.OpJoin, Room: "lobby"}) // the page's own room
		expect(t, c, protocol.OpJoined, "lobby")
	}
	for i, turn := range []struct{ from, to *websocket.Conn }{{alice, bob}, {bob, alice}} {
		text := fmt.Sprintf("quickstart line %d at %s", i, time.Now().Format(time.RFC3339Nano))
		send(t, turn.from, protocol.ClientFrame{Op: protocol.OpSend, Room: "lobby", Text: text, ID: "q" + strconv.Itoa(i)})
		expect(t, turn.from, protocol.OpAck, "q"+strconv.Itoa(i))
		expect(t, turn.to, protocol.OpMessage, text)
	}
	report.Logf(t, "quickstart: two pages chatted through %s in %s", up.link, time.Since(began).Round(time.Millisecond))
}

// dial connects as the chat page does: the token as the bearer subprotocol,
// the page's origin. user, if set, is who the welcome must name.
func (up *makeUp) dial(t *testing.T, ns *netns.Namespace, token, user string) *websocket.Conn {
	d := websocket.Dialer{NetDialContext: ns.DialContext, HandshakeTimeout: 10 * time.Second,
		Subprotocols: []string{auth.Subprotocol, auth.BearerPrefix + token}}
	conn, resp, err := d.Dial(strings.Replace(up.link, "http", "ws", 1)+"/ws", http.Header{"Origin": {up.link}})
	if err != nil {
		t.Fatalf("connect to %s/ws: %v (%v)", up.link, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	w := expect(t, conn, protocol.OpWelcome, user)
	report.Logf(t, "quickstart: %s connected to %s", w.User, w.Instance)
	return conn
}

func send(t *testing.T, c *websocket.Conn, f protocol.ClientFrame) {
	t.Helper()
	if err := c.WriteJSON(f); err != nil {
		t.Fatalf("send %+v: %v", f, err)
	}
}

// expect reads frames until one of op whose room, id, text or user is want
// (any, if want is empty).
func expect(t *testing.T, c *websocket.Conn, op, want string) protocol.ServerFrame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f protocol.ServerFrame
		if err := c.ReadJSON(&f); err != nil {
			t.Fatalf("waiting for %s %q: %v", op, want, err)
		}
		if f.Op == protocol.OpError {
			t.Fatalf("waiting for %s %q: error frame %+v", op, want, f)
		}
		if f.Op == op && (want == "" || slices.Contains([]string{f.Room, f.ID, f.Text, f.User}, want)) {
			return f
		}
	}
}

// stop is Ctrl-C: SIGINT to the foreground process group. make up must then
// end, and so must every process it started.
func (up *makeUp) stop(t *testing.T) {
	procs := processesOf(up.cmd.Process.Pid)
	began := time.Now()
	if err := syscall.Kill(-up.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
	select {
	case <-up.exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("make up still runs 2 minutes after Ctrl-C:\n%s", up.out)
	}
	if !strings.Contains(up.out.String(), "stopping:") || strings.Contains(up.out.String(), "switchboard-local: ") {
		t.Errorf("make up did not stop cleanly after Ctrl-C:\n%s", up.out)
	}
	until(t, "every process of make up gone", 10*time.Second, func() error {
		var left []string
		for _, p := range procs {
			if p.alive() {
				left = append(left, p.String())
			}
		}
		if len(left) > 0 {
			return errorf("still running: %s", strings.Join(left, ", "))
		}
		return nil
	})
	report.Logf(t, "quickstart: Ctrl-C stopped make up and its %d processes in %s", len(procs), time.Since(began).Round(time.Millisecond))
}

// proc is a process, told apart from a later one with its pid by its start time.
type proc struct {
	pid   int
	start string
	name  string
}

func (p proc) String() string { return fmt.Sprintf("%s (%d)", p.name, p.pid) }

// alive: the same process still runs (a zombie has ended).
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && now.start == p.start && now.state != "Z"
}

type procStat struct {
	proc
	state         string
	ppid, session int
}

// readProc reads /proc/<pid>/stat (proc(5)).
func readProc(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(s[end+1:]) // from field 3, state
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	session, _ := strconv.Atoi(f[3])
	return procStat{proc: proc{pid: pid, start: f[19], name: s[open+1 : end]}, state: f[0], ppid: ppid, session: session}, true
}

// processesOf lists the running processes of the session led by leader and
// their descendants: the children that app/local starts keep the session
// (their own process groups, so Ctrl-C reaches only the launcher), and
// PostgreSQL's backends, which start sessions of their own, descend from the
// postmaster.
func processesOf(leader int) []proc {
	entries, _ := os.ReadDir("/proc")
	var all []procStat
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if p, ok := readProc(pid); ok && p.state != "Z" {
				all = append(all, p)
			}
		}
	}
	ours := map[int]bool{}
	for _, p := range all {
		if p.session == leader {
			ours[p.pid] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, p := range all {
			if !ours[p.pid] && ours[p.ppid] {
				ours[p.pid], grew = true, true
			}
		}
	}
	var out []proc
	for _, p := range all {
		if ours[p.pid] {
			out = append(out, p.proc)
		}
	}
	return out
}

// newNetns is a network namespace for the quickstart: its fixed ports
// (NGINX on 8080, Prometheus on 9090, ...) are free in it whatever else this
// machine runs, as on a fresh machine. Where namespaces are not allowed (a
// container without CAP_SYS_ADMIN, whose own namespace then serves), it is
// nil: this machine's namespace.
func newNetns(t *testing.T) *netns.Namespace {
	ns, err := netns.New()
	if errors.Is(err, netns.ErrNotAllowed) {
		report.Logf(t, "quickstart: %v: in this machine's namespace, where make up's ports must be free", err)
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNetns runs f in ns.
func inNetns(t *testing.T, ns *netns.Namespace, f func()) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
