package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// peer is the server's end of one connection in a scripted server: these
// tests play the server's part frame by frame, including the answers a
// real one gives only under faults.
type peer struct {
	t    *testing.T
	conn *websocket.Conn
}

// next reads the client's next frame.
func (p *peer) next() map[string]any {
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f map[string]any
	if err := p.conn.ReadJSON(&f); err != nil {
		p.t.Errorf("server: read the client's frame: %v", err)
		return map[string]any{}
	}
	return f
}

// wait reads until the client goes away.
func (p *peer) wait() {
	for {
		if _, _, err := p.conn.ReadMessage(); err != nil {
			return
		}
	}
}

func (p *peer) send(frame string) {
	if err := p.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		p.t.Errorf("server: write %s: %v", frame, err)
	}
}

// try sends frame to a client that may have closed the connection (as it
// does when its mailbox overflows), and reports whether it was written.
func (p *peer) try(frame string) bool {
	return p.conn.WriteMessage(websocket.TextMessage, []byte(frame)) == nil
}

func (p *peer) closeWith(code int, reason string) {
	p.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	p.conn.Close()
}

// scripted serves /ws: the n-th connection (1 for the first) is welcomed
// and handed to script; refuse, if set, answers the n-th handshake with a
// status instead (0: upgrade). mux serves anything else.
type scripted struct {
	*httptest.Server
	conns  atomic.Int32
	refuse func(n int) int
	script func(n int, p *peer)
	mux    *http.ServeMux
	ended  chan int // the number of each connection whose handler returned
}

func serve(t *testing.T, script func(n int, p *peer)) *scripted {
	s := &scripted{script: script, mux: http.NewServeMux(), ended: make(chan int, 64)}
	up := websocket.Upgrader{}
	s.mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		n := int(s.conns.Add(1))
		defer func() { s.ended <- n }()
		if s.refuse != nil {
			if code := s.refuse(n); code != 0 {
				http.Error(w, "refused", code)
				return
			}
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		p := &peer{t: t, conn: conn}
		// Not p.send: the client may be gone already (Close in a handshake).
		conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"welcome","instance":"fake","user":"alice"}`))
		s.script(n, p)
	})
	s.Server = httptest.NewServer(s.mux)
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) dial(t *testing.T, opts Options) *Client {
	t.Helper()
	return dialServer(t, s.Server, opts)
}

// dialServer dials srv's /ws with opts, backing off from 1 ms to 20 ms
// unless opts sets MinBackoff, and closes the client when the test ends.
func dialServer(t *testing.T, srv *httptest.Server, opts Options) *Client {
	t.Helper()
	opts.URL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 20*time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// within fails the test if ch is not closed or fed within d (a hang).
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %s", what, d)
		var zero T
		return zero
	}
}

func messages(t *testing.T, c *Client, n int) []int64 {
	t.Helper()
	var seqs []int64
	for range n {
		seqs = append(seqs, within(t, c.Messages(), 10*time.Second, fmt.Sprintf("message %d of %d", len(seqs)+1, n)).Seq)
	}
	return seqs
}

func msg(room string, seq int64) string {
	return fmt.Sprintf(`{"op":"message","room":%q,"seq":%d,"user":"bob","text":"m%d","ts":"2026-11-23T10:00:00.000Z"}`, room, seq, seq)
}

// Close while a reconnect's handshake is under way returns, and the
// connection that handshake would have opened is never used.
func TestCloseDuringAReconnectReturns(t *testing.T) {
	handshaking := make(chan struct{})
	release := make(chan struct{})
	var used atomic.Bool
	s := serve(t, func(n int, p *peer) {
		if n == 1 {
			p.conn.Close() // the client reconnects
			return
		}
		if _, _, err := p.conn.ReadMessage(); err == nil {
			used.Store(true)
		}
	})
	s.refuse = func(n int) int {
		if n == 2 {
			close(handshaking)
			<-release // the handshake hangs until Close has been called
		}
		return 0
	}
	c := s.dial(t, Options{})
	within(t, handshaking, 10*time.Second, "the reconnect")
	closed := make(chan error)
	go func() { closed <- c.Close() }()
	within(t, closed, 5*time.Second, "Close during the handshake")
	close(release)
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err() = %v, want ErrClosed", c.Err())
	}
	for n := 0; n != 2; {
		n = within(t, s.ended, 10*time.Second, "the handshake's handler")
	}
	if used.Load() {
		t.Fatal("the connection the handshake opened was used after Close")
	}
}

// A refusal no reconnect can cure ends the client with that error, and the
// calls waiting fail with it, instead of retrying forever.
func TestRefusalsThatNoRetryCuresEndTheClient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // the reconnect's handshake answer
		close  int // how the first connection ends
		want   func(error) bool
	}{
		{"401 on the reconnect", http.StatusUnauthorized, websocket.CloseGoingAway, func(err error) bool {
			var he *HandshakeError
			return errors.As(err, &he) && he.Status == http.StatusUnauthorized
		}},
		{"403 on the reconnect", http.StatusForbidden, websocket.CloseGoingAway, func(err error) bool {
			var he *HandshakeError
			return errors.As(err, &he) && he.Status == http.StatusForbidden
		}},
		{"close 1008: the token expired", 0, protocol.ClosePolicy, func(err error) bool {
			var pe *PolicyError
			return errors.As(err, &pe) && pe.Reason == "token expired"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sendRead := make(chan struct{})
			s := serve(t, func(n int, p *peer) {
				if n > 1 {
					t.Errorf("connection %d: the client reconnected after close %d", n, tc.close)
					return
				}
				p.next() // the send, never acked
				close(sendRead)
				p.closeWith(tc.close, "token expired")
			})
			s.refuse = func(n int) int {
				if n > 1 {
					return tc.status
				}
				return 0
			}
			c := s.dial(t, Options{})
			sent := make(chan error)
			go func() {
				_, err := c.Send(context.Background(), "lobby", "hi")
				sent <- err
			}()
			within(t, sendRead, 10*time.Second, "the send")
			within(t, c.Done(), 10*time.Second, "the client to stop")
			if err := c.Err(); !tc.want(err) {
				t.Fatalf("Err() = %v", err)
			}
			if err := within(t, sent, 10*time.Second, "the pending send"); !tc.want(err) {
				t.Fatalf("the pending send failed with %v, want the refusal", err)
			}
		})
	}
}

// A rejoin the server refuses for now (internal) is tried again until it
// succeeds: the room is not dropped in silence.
func TestARefusedRejoinIsRetried(t *testing.T) {
	var rejoins atomic.Int32
	s := serve(t, func(n int, p *peer) {
		if n == 1 {
			p.next()
			p.send(`{"op":"joined","room":"lobby","seq":3}`)
			p.send(msg("lobby", 4))
			p.conn.Close()
			return
		}
		for {
			f := p.next()
			if f["op"] != "join" {
				return
			}
			if rejoins.Add(1) < 3 {
				p.send(`{"op":"error","code":"internal","message":"could not join lobby: the message bus is unavailable; retry"}`)
				continue
			}
			if f["since"] != 4.0 {
				t.Errorf("rejoin since %v, want 4", f["since"])
			}
			p.send(`{"op":"joined","room":"lobby","seq":5}`)
			p.send(msg("lobby", 5))
			p.wait()
			return
		}
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, c, 2); got[0] != 4 || got[1] != 5 {
		t.Fatalf("messages %v, want [4 5]", got)
	}
	if n := rejoins.Load(); n != 3 {
		t.Fatalf("%d rejoins, want 3 (two refused)", n)
	}
}

// A rejoin refused for good (not internal) drops the room and says so on
// Errors.
func TestARejoinRefusedForGoodIsReported(t *testing.T) {
	s := serve(t, func(n int, p *peer) {
		p.next()
		if n == 1 {
			p.send(`{"op":"joined","room":"lobby","seq":3}`)
			p.conn.Close()
			return
		}
		p.send(`{"op":"error","code":"bad_request","message":"at most 100 rooms per connection"}`)
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	var je *JoinError
	if err := within(t, c.Errors(), 10*time.Second, "the rejoin's refusal"); !errors.As(err, &je) || je.Room != "lobby" {
		t.Fatalf("Errors: %v, want a JoinError for lobby", err)
	}
}

// The server answers a connection's frames in order: a join refusal that
// names no room answers the oldest join unanswered, never another one,
// both ways round.
func TestAJoinRefusalWithoutRoomAnswersTheOldestJoin(t *testing.T) {
	for _, refuseFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("refuse first %v", refuseFirst), func(t *testing.T) {
			read := make(chan string, 2)
			s := serve(t, func(n int, p *peer) {
				a, b := p.next(), p.next()
				read <- a["room"].(string)
				read <- b["room"].(string)
				if refuseFirst {
					p.send(`{"op":"error","code":"internal","message":"could not join"}`)
					p.send(fmt.Sprintf(`{"op":"joined","room":%q,"seq":0}`, b["room"]))
				} else {
					p.send(fmt.Sprintf(`{"op":"joined","room":%q,"seq":0}`, a["room"]))
					p.send(`{"op":"error","code":"internal","message":"could not join"}`)
				}
				p.wait()
			})
			c := s.dial(t, Options{})
			results := map[string]chan error{"a": make(chan error, 1), "b": make(chan error, 1)}
			go func() { _, err := c.Join(context.Background(), "a"); results["a"] <- err }()
			// b only once a is on the wire, so the order is known.
			for !c.pendingJoin("a") {
				time.Sleep(time.Millisecond)
			}
			go func() { _, err := c.Join(context.Background(), "b"); results["b"] <- err }()
			first := within(t, read, 10*time.Second, "the first join")
			refused, ok := first, second(first)
			if !refuseFirst {
				refused, ok = ok, refused
			}
			if err := within(t, results[refused], 10*time.Second, "join "+refused); err == nil {
				t.Errorf("join %s succeeded, want the refusal", refused)
			}
			if err := within(t, results[ok], 10*time.Second, "join "+ok); err != nil {
				t.Errorf("join %s: %v, want success", ok, err)
			}
		})
	}
}

func second(room string) string { return map[string]string{"a": "b", "b": "a"}[room] }

// pendingJoin reports whether a join of room is written and unanswered.
func (c *Client) pendingJoin(room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0 && c.pending[0] == room
}

// A resume carries the epoch of the room's last joined frame.
func TestAResumeCarriesTheRoomsEpoch(t *testing.T) {
	resumed := make(chan map[string]any, 1)
	s := serve(t, func(n int, p *peer) {
		f := p.next()
		if n == 1 {
			p.send(`{"op":"joined","room":"lobby","seq":7,"epoch":"k3j9x2ab"}`)
			p.conn.Close()
			return
		}
		resumed <- f
		p.send(`{"op":"joined","room":"lobby","seq":7,"epoch":"k3j9x2ab"}`)
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	f := within(t, resumed, 10*time.Second, "the resume")
	if f["since"] != 7.0 || f["epoch"] != "k3j9x2ab" {
		t.Fatalf("resume frame %v, want since 7 and epoch k3j9x2ab", f)
	}
}

// A history_gap's range is fetched from the history API, page by page,
// and delivered in order before the room's later messages, which arrive
// while the fetch runs; what the API lacks is reported as a gap. With a
// mailbox that overflows in the middle of the range (the user reads only
// once it has), the resumes announce the rest of the range again, and the
// user still gets each message and each gap once, in order.
func TestAGapIsFilledFromTheHistoryAPI(t *testing.T) {
	for _, size := range []int{0, 100} {
		t.Run(fmt.Sprintf("mailbox %d", size), func(t *testing.T) { gapFilled(t, size) })
	}
}

func gapFilled(t *testing.T, size int) {
	const from, to = 3, 1200 // past two pages of 500
	missing := map[int64]bool{10: true, 11: true, 700: true}
	live := make(chan struct{})
	var once sync.Once
	var pages atomic.Int32
	s := serve(t, func(n int, p *peer) {
		p.next()
		// try: with a small mailbox the client closes connections.
		_ = p.try(`{"op":"joined","room":"lobby","seq":1202}`) &&
			p.try(fmt.Sprintf(`{"op":"error","code":"history_gap","room":"lobby","from":%d,"to":%d,"message":"not kept"}`, from, to)) &&
			p.try(msg("lobby", 1201)) && p.try(msg("lobby", 1202))
		once.Do(func() { close(live) })
		p.wait()
	})
	s.mux.HandleFunc("GET /rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		<-live // the later messages are in before the history answers
		if pages.Add(1) == 1 {
			http.Error(w, "history store unavailable", http.StatusServiceUnavailable) // retried
			return
		}
		var before, limit int64
		fmt.Sscan(r.URL.Query().Get("before"), &before)
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		var frames []json.RawMessage
		for seq := max(1, before-limit); seq < before; seq++ {
			if !missing[seq] {
				frames = append(frames, json.RawMessage(msg("lobby", seq)))
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"room": r.PathValue("room"), "messages": frames})
	})
	c := s.dial(t, Options{FillGaps: true, MailboxSize: size})
	if _, err := c.Resume(context.Background(), "lobby", 2); err != nil {
		t.Fatal(err)
	}
	if size > 0 {
		until(t, "the overflow", func() bool { return c.Stats().Overflows > 0 })
	}
	got := messages(t, c, to-from+1-len(missing)+2)
	want := int64(from)
	for _, seq := range got {
		for missing[want] {
			want++
		}
		if seq != want {
			t.Fatalf("message %d after %d, want %d", seq, want-1, want)
		}
		want++
	}
	var gaps []string
	for range 2 {
		var ge *GapError
		if err := within(t, c.Errors(), 10*time.Second, "the gaps"); errors.As(err, &ge) {
			gaps = append(gaps, fmt.Sprintf("%s %d..%d", ge.Room, ge.From, ge.To))
		}
	}
	if strings.Join(gaps, ", ") != "lobby 10..11, lobby 700..700" {
		t.Fatalf("gaps reported: %v, want lobby 10..11 and 700..700", gaps)
	}
	select {
	case m := <-c.Messages():
		t.Fatalf("message %d after the last", m.Seq)
	case err := <-c.Errors():
		t.Fatalf("error after the gaps: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if pages.Load() < 4 {
		t.Fatalf("%d history requests, want a refused one and three pages", pages.Load())
	}
}

// Without FillGaps the whole range is reported and the room goes on.
func TestAGapIsReportedWhenNotFilled(t *testing.T) {
	s := serve(t, func(n int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":50}`)
		p.send(`{"op":"error","code":"history_gap","room":"lobby","from":1,"to":48,"message":"not kept"}`)
		p.send(msg("lobby", 49))
		p.send(msg("lobby", 50))
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Resume(context.Background(), "lobby", 0); err != nil {
		t.Fatal(err)
	}
	var ge *GapError
	if err := within(t, c.Errors(), 10*time.Second, "the gap"); !errors.As(err, &ge) || ge.From != 1 || ge.To != 48 {
		t.Fatalf("Errors: %v, want lobby 1..48", err)
	}
	if got := messages(t, c, 2); got[0] != 49 || got[1] != 50 {
		t.Fatalf("messages %v, want [49 50]", got)
	}
}

// The answer to a resume that crossed the user's leave (written on a
// connection that had just broken) does not bring the room back.
func TestALeftRoomStaysLeft(t *testing.T) {
	left := make(chan struct{})
	s := serve(t, func(n int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":3}`)
		<-left
		p.send(`{"op":"joined","room":"lobby","seq":9}`) // a late answer
		p.send(msg("lobby", 10))
		p.send(`{"op":"joined","room":"other","seq":0}`)
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	if last, err := c.Leave(context.Background(), "lobby"); err != nil || last != 3 {
		t.Fatalf("Leave: %d, %v; want 3", last, err)
	}
	joined := make(chan error, 1)
	go func() { _, err := c.Join(context.Background(), "other"); joined <- err }()
	for !c.pendingJoin("other") {
		time.Sleep(time.Millisecond)
	}
	close(left)
	if err := within(t, joined, 10*time.Second, "join other"); err != nil {
		t.Fatal(err)
	}
	if c.LastSeq("lobby") != 0 {
		t.Fatalf("lobby is back with seq %d after the leave", c.LastSeq("lobby"))
	}
	select {
	case m := <-c.Messages():
		t.Fatalf("delivered %+v from a room left", m)
	default:
	}
}

// A message that arrives between a resume and its joined belongs to the
// membership the resume replaces: it is not delivered ahead of the
// catch-up, which would make the client skip what precedes it.
func TestMessagesBeforeJoinedWaitForTheCatchUp(t *testing.T) {
	s := serve(t, func(n int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":3}`)
		p.next()                // the leave
		p.next()                // the resume from 3
		p.send(msg("lobby", 6)) // late, from the membership left
		p.send(`{"op":"joined","room":"lobby","seq":6}`)
		for seq := int64(4); seq <= 6; seq++ {
			p.send(msg("lobby", seq))
		}
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Join(context.Background(), "lobby"); err != nil {
		t.Fatal(err)
	}
	last, err := c.Leave(context.Background(), "lobby")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resume(context.Background(), "lobby", last); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, c, 3); got[0] != 4 || got[1] != 5 || got[2] != 6 {
		t.Fatalf("messages %v, want [4 5 6]", got)
	}
}

// A Join or Leave that a reconnect overtakes goes out on the connection
// that replaced the broken one, in either order: written, then the
// connection lost (online() repeats the join; a leave needs nothing), or
// the connection replaced between the call's wait for one and its write.
// Written on the broken connection, a resume would never be answered, and
// the room's messages on the new one would be taken for a replaced
// membership's and dropped: the chaos run of 2026-12-07 14:19 (seed 1).
func TestAJoinOrLeaveOvertakenByAReconnectGoesOutOnTheNewConnection(t *testing.T) {
	for _, tc := range []struct {
		op        string
		overtaken bool     // the reconnect comes between the call's wait for a connection and its write
		want      []string // what the new connection reads, up to the join of "other"
	}{
		{"join", false, []string{"join lobby since 5", "join other"}},
		{"join", true, []string{"join lobby since 5", "join other"}},
		{"leave", false, []string{"join other"}},
		{"leave", true, []string{"join lobby since 3", "leave lobby", "join other"}},
	} {
		t.Run(fmt.Sprintf("%s overtaken %v", tc.op, tc.overtaken), func(t *testing.T) {
			latest := map[string]int64{"join": 7, "leave": 3}[tc.op]
			drop := make(chan struct{})
			read := make(chan []string, 1)
			s := serve(t, func(n int, p *peer) {
				if n == 1 {
					if tc.op == "leave" {
						p.next()
						p.send(`{"op":"joined","room":"lobby","seq":3}`)
					}
					if tc.overtaken {
						<-drop
					} else {
						p.next() // the call's frame; then the connection breaks
					}
					p.conn.Close()
					return
				}
				var got []string
				defer func() { read <- got }()
				for {
					var f map[string]any
					if p.conn.ReadJSON(&f) != nil {
						return // the client is gone: got says what it had written
					}
					line := fmt.Sprintf("%s %s", f["op"], f["room"])
					if since, ok := f["since"].(float64); ok {
						line += fmt.Sprintf(" since %d", int64(since))
					}
					got = append(got, line)
					switch {
					case f["op"] == "join" && f["room"] == "lobby":
						p.send(fmt.Sprintf(`{"op":"joined","room":"lobby","seq":%d}`, latest))
						for seq := int64(f["since"].(float64)) + 1; seq <= latest; seq++ {
							p.send(msg("lobby", seq))
						}
					case f["op"] == "join":
						p.send(`{"op":"joined","room":"other","seq":0}`)
						return
					}
				}
			})
			c := s.dial(t, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.op == "leave" {
				if _, err := c.Join(ctx, "lobby"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.overtaken {
				c.afterCurrent = func() {
					c.afterCurrent = nil
					close(drop)
					until(t, "connection 2 online", func() bool {
						c.mu.Lock()
						defer c.mu.Unlock()
						select {
						case <-c.up:
							return c.cur.n == 2
						default:
							return false
						}
					})
				}
			}
			switch tc.op {
			case "join":
				if seq, err := c.Resume(ctx, "lobby", 5); err != nil || seq != latest {
					t.Fatalf("Resume: %d, %v; want %d", seq, err, latest)
				}
				if got := messages(t, c, 2); got[0] != 6 || got[1] != 7 {
					t.Fatalf("messages %v, want [6 7]", got)
				}
			case "leave":
				if last, err := c.Leave(ctx, "lobby"); err != nil || last != 3 {
					t.Fatalf("Leave: %d, %v; want 3", last, err)
				}
			}
			if _, err := c.Join(ctx, "other"); err != nil {
				t.Fatal(err)
			}
			if got := within(t, read, 10*time.Second, "the new connection's frames"); !slices.Equal(got, tc.want) {
				t.Errorf("the new connection read %q, want %q", got, tc.want)
			}
		})
	}
}

// A Close while a gap's range is being fetched leaves the room's last seq
// before the gap: the messages that waited behind the gap are not counted
// as delivered, so a resume from LastSeq is told of the gap again.
func TestCloseDuringAGapsFetchKeepsTheRoomBeforeTheGap(t *testing.T) {
	fetching := make(chan struct{})
	s := serve(t, func(n int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":50}`)
		p.send(msg("lobby", 2))
		p.send(`{"op":"error","code":"history_gap","room":"lobby","from":3,"to":48,"message":"not kept"}`)
		p.send(msg("lobby", 49))
		p.wait()
	})
	s.mux.HandleFunc("GET /rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		close(fetching)
		<-r.Context().Done() // answers only when the client gives up
	})
	c := s.dial(t, Options{FillGaps: true})
	if _, err := c.Resume(context.Background(), "lobby", 1); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, c, 1); got[0] != 2 {
		t.Fatalf("messages %v, want [2]", got)
	}
	<-fetching
	c.Close()
	// The fetch ends on its own goroutine, which Close does not wait for:
	// watch the position for a while after it.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if last := c.LastSeq("lobby"); last != 2 {
			t.Fatalf("LastSeq after a Close during the gap's fetch = %d, want 2 (before the gap)", last)
		}
	}
}

// The first connection is retried as a reconnect is: refusals a retry can
// get past (503 while an instance drains, 502 from a balancer whose instance
// just died) until the server welcomes the client; 401 and 403, or any
// refusal with NoReconnect, fail Dial at once.
func TestDialRetriesWhatAReconnectRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		refusals    []int // the first handshakes' answers, then an upgrade
		noReconnect bool
		wantStatus  int // Dial's HandshakeError; 0: Dial succeeds
		wantTries   int32
	}{
		{"503 then 502, then welcomed", []int{http.StatusServiceUnavailable, http.StatusBadGateway}, false, 0, 3},
		{"401 at once", []int{http.StatusUnauthorized}, false, http.StatusUnauthorized, 1},
		{"403 at once", []int{http.StatusForbidden}, false, http.StatusForbidden, 1},
		{"503 with NoReconnect", []int{http.StatusServiceUnavailable}, true, http.StatusServiceUnavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, func(_ int, p *peer) { p.wait() })
			s.refuse = func(n int) int {
				if n <= len(tc.refusals) {
					return tc.refusals[n-1]
				}
				return 0
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, Options{URL: "ws" + strings.TrimPrefix(s.URL, "http") + "/ws", NoReconnect: tc.noReconnect,
				MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
			if c != nil {
				defer c.Close()
			}
			var he *HandshakeError
			switch {
			case tc.wantStatus == 0 && err != nil:
				t.Fatalf("Dial: %v, want the client welcomed", err)
			case tc.wantStatus != 0 && (!errors.As(err, &he) || he.Status != tc.wantStatus):
				t.Fatalf("Dial: %v, want a HandshakeError with %d", err, tc.wantStatus)
			}
			if got := s.conns.Load(); got != tc.wantTries {
				t.Errorf("%d handshakes, want %d", got, tc.wantTries)
			}
		})
	}
}

// room plays a room of n messages: each resume is answered with joined n
// and the messages after its since, written as fast as the socket takes
// them. It reports each resume's since.
func room(n int64, joins chan<- int64) func(int, *peer) {
	return func(_ int, p *peer) {
		since := int64(p.next()["since"].(float64))
		joins <- since
		p.send(fmt.Sprintf(`{"op":"joined","room":"lobby","seq":%d}`, n))
		for seq := since + 1; seq <= n && p.try(msg("lobby", seq)); seq++ {
		}
		p.wait()
	}
}

// until polls cond for up to 10s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("still waiting for %s after 10s", what)
		}
	}
}

// A user who stops reading while the room sends far more than the mailbox
// holds costs at most MailboxSize queued messages; the client disconnects
// rather than queue more, stays off until the user has read them, and then
// resumes after the last one: the user gets every seq once, in order.
func TestAUserWhoStopsReadingGetsEverythingOnceReadWithBoundedMemory(t *testing.T) {
	const size, n = 100, 5000
	joins := make(chan int64, n)
	s := serve(t, room(n, joins))
	c := s.dial(t, Options{MailboxSize: size})
	if _, err := c.Resume(context.Background(), "lobby", 0); err != nil {
		t.Fatal(err)
	}
	until(t, "the overflow", func() bool { return c.Stats().Overflows > 0 })
	time.Sleep(100 * time.Millisecond) // time for a reconnect that must not happen
	if st := c.Stats(); st.Connects != 1 {
		t.Fatalf("%d connections before the user read anything, want 1: the client must wait for the drain", st.Connects)
	}
	if queued, _ := c.box.len(); queued != size {
		t.Fatalf("%d messages queued after the overflow, want %d", queued, size)
	}
	for i, seq := range messages(t, c, n) {
		if seq != int64(i+1) {
			t.Fatalf("message %d has seq %d, want %d", i+1, seq, i+1)
		}
	}
	select {
	case m := <-c.Messages():
		t.Fatalf("message %d after all %d", m.Seq, n)
	case err := <-c.Errors():
		t.Fatalf("error %v: nothing was missing", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, peak := c.box.len(); peak > size {
		t.Fatalf("%d messages queued at the peak, want at most %d", peak, size)
	}
	if <-joins != 0 || <-joins != size {
		t.Fatalf("the first resume is not from seq %d, the last one the user had", size)
	}
	if st := c.Stats(); st.Dropped == 0 || st.CloseCodes[1006]+st.CloseCodes[1000] != 0 {
		t.Fatalf("stats %+v: want drops counted, and no close of our own counted as the server's", st)
	}
	if last := c.LastSeq("lobby"); last != n {
		t.Fatalf("LastSeq = %d after reading everything, want %d", last, n)
	}
}

// Close while the user never reads ends the mailbox's pump: no goroutine
// is left blocked on a channel nobody reads.
func TestCloseEndsThePumpOfAMailboxNobodyReads(t *testing.T) {
	s := serve(t, room(10, make(chan int64, 1)))
	before := runtime.NumGoroutine()
	c := s.dial(t, Options{})
	if _, err := c.Resume(context.Background(), "lobby", 0); err != nil {
		t.Fatal(err)
	}
	until(t, "10 messages queued", func() bool { n, _ := c.box.len(); return n == 10 })
	closed := make(chan error)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		go func() {
			for range c.Messages() {
			}
		}() // lets the cleanup's Close end
		t.Fatal("Close hangs while the pump waits for a reader")
	}
	select {
	case <-c.box.gone:
	default:
		t.Fatal("the pump is still running after Close")
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages is open after Close")
	}
	within(t, s.ended, 10*time.Second, "the server's end of the connection")
	var now int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
	}
	t.Fatalf("%d goroutines after Close, %d before Dial", now, before)
}

// What the user has not received is dropped at Close, and LastSeq says
// where the user stands, counting a gap handed to Errors, which stays
// readable: a new client resumes from there with no gap or duplicate.
func TestLastSeqAfterCloseIsWhatTheUserReceived(t *testing.T) {
	s := serve(t, func(_ int, p *peer) {
		p.next()
		p.send(`{"op":"joined","room":"lobby","seq":10}`)
		for seq := int64(1); seq <= 3; seq++ {
			p.send(msg("lobby", seq))
		}
		p.send(`{"op":"error","code":"history_gap","room":"lobby","from":4,"to":8,"message":"not kept"}`)
		p.send(msg("lobby", 9))
		p.send(msg("lobby", 10))
		p.wait()
	})
	c := s.dial(t, Options{})
	if _, err := c.Resume(context.Background(), "lobby", 0); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, c, 2); got[1] != 2 {
		t.Fatalf("messages %v, want [1 2]", got)
	}
	// Everything queued (up to 10) and 4 items left: 3, the gap, 9, 10. Four
	// items alone could be 2 to 9, with 2 received but not yet recorded.
	until(t, "message 3 offered", func() bool {
		c.mu.Lock()
		queued := c.rooms["lobby"].last == 10
		c.mu.Unlock()
		n, _ := c.box.len()
		return queued && n == 4
	})
	if last := c.LastSeq("lobby"); last != 2 {
		t.Fatalf("LastSeq = %d with messages 1 and 2 received, want 2", last)
	}
	messages(t, c, 1)
	until(t, "the gap handed to Errors", func() bool { return len(c.Errors()) == 1 })
	c.Close()
	if last := c.LastSeq("lobby"); last != 8 {
		t.Fatalf("LastSeq after Close = %d, want 8 (message 3 received, then the gap 4..8)", last)
	}
	var ge *GapError
	if err := within(t, c.Errors(), time.Second, "the gap after Close"); !errors.As(err, &ge) || ge.From != 4 || ge.To != 8 {
		t.Fatalf("Errors after Close: %v, want the gap 4..8", err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("a message not received before Close was delivered after it")
	}
}

// The mailbox on its own: the bound, the order across both channels, the
// drain signal, and close.
func TestMailbox(t *testing.T) {
	m := func(seq int64) item { return item{msg: protocol.Message{Room: "r", Seq: seq}} }
	e := func(seq int64) item { return item{err: &GapError{Room: "r", From: seq, To: seq}} }
	seqOf := func(it item) int64 {
		if ge, ok := it.err.(*GapError); ok {
			return ge.From
		}
		return it.msg.Seq
	}
	for _, tc := range []struct {
		name  string
		limit int
		put   []item
		fits  int // how many puts fit
	}{
		{"within the bound", 3, []item{m(1), e(2), m(3)}, 3},
		{"past the bound", 2, []item{m(1), m(2), m(3), e(4)}, 2},
		{"errors count too", 2, []item{e(1), e(2), m(3)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var taken []int64
			block := make(chan struct{})
			box := newMailbox(tc.limit, func(it item) {
				<-block // the first item stays queued until the puts are done
				taken = append(taken, seqOf(it))
			})
			for i, it := range tc.put {
				if got := box.put(it); got != (i < tc.fits) {
					t.Fatalf("put %d: %v, want %v", i+1, got, i < tc.fits)
				}
			}
			if n, peak := box.len(); n != tc.fits || peak != tc.fits {
				t.Fatalf("len %d, peak %d, want %d", n, peak, tc.fits)
			}
			drained := box.drained()
			close(block)
			var got, want []int64
			for _, it := range tc.put[:tc.fits] {
				want = append(want, seqOf(it))
				if it.err != nil {
					got = append(got, seqOf(item{err: within(t, box.errs, time.Second, "an error")}))
				} else {
					got = append(got, within(t, box.msgs, time.Second, "a message").Seq)
				}
			}
			within(t, drained, time.Second, "drained")
			if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(taken) != fmt.Sprint(want) {
				t.Fatalf("handed %v, taken %v, want the order of the puts that fit: %v", got, taken, want)
			}
			box.close()
			within(t, box.gone, time.Second, "the pump's end")
			if !box.put(m(9)) {
				t.Fatal("put after close refused: it must be discarded quietly")
			}
		})
	}
	t.Run("close discards, keeps handed errors", func(t *testing.T) {
		box := newMailbox(10, nil)
		box.put(e(1))
		box.put(m(2))
		box.put(m(3))
		until(t, "the error handed", func() bool { return len(box.errs) == 1 })
		box.close()
		within(t, box.gone, time.Second, "the pump's end with nobody reading")
		if _, ok := <-box.msgs; ok {
			t.Fatal("a message after close")
		}
		if err, ok := <-box.errs; !ok || err == nil {
			t.Fatal("the error handed before close is lost")
		}
	})
}
