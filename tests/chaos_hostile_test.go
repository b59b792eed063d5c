package tests

// Hostile chaos users (issue 26): the last chaosHostile of the chaos test's
// clients attack while the faults run, one behaviour each, and the honest
// ones must still see every guarantee hold. A hostile user's acked sends
// are recorded like anyone's and held to every invariant (an acked message
// is one, whoever sent it); what else it does (joins, catch-ups, refused
// upgrades) stays out of the streams the checker proves. Each refusal it
// draws as it should (a quota's rate_limited or 429, bad_request for
// poison, 1009 for an oversize frame, 401 for a token whose sub holds NUL)
// is recorded as a chaos.Hostile event, and chaos.Floors.Hostile requires
// enough of each kind: a run whose attacks never reached a limit fails as
// vacuous. A poison that gets through is a chaos.Breach, a violation.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/tests/chaos"
)

// chaosHostile of the chaosClients attack: the last ones, so that the
// honest users keep their numbers, random streams and source addresses
// whatever the seed, and the machine runs the same 50 clients as before.
const chaosHostile = 5

// The hostile behaviours, given out in turn to the hostile users.
const (
	hostilePoison  = "poison"          // NUL in text and id, invalid JSON, oversize frames, a sub with NUL
	hostileFlood   = "send flood"      // sends far past QUOTA_USER_SENDS over several connections
	hostileSpray   = "join spray"      // joins of new rooms and old, past QUOTA_USER_ROOMS and QUOTA_USER_JOINS
	hostileResumes = "resume storm"    // resumes from seq 1 of the busy rooms, past QUOTA_USER_RESUMES
	hostileStorm   = "reconnect storm" // upgrades in a loop, and held connections, past the connection limits
)

var hostileBehaviours = []string{hostilePoison, hostileFlood, hostileSpray, hostileResumes, hostileStorm}

// chaosLimits are the chaos run's limits. The honest users stay far under
// each (the report prints their peaks; seed 1 measured at most 197 sends, 39
// joins, 33 far resumes and 15 upgrades a minute per user or address,
// retries included); the hostile ones pass each within seconds of a
// window's start, which matters: a Redis wipe, eviction or restart without
// data starts every count again, several times a minute. The instances
// trust NGINX's X-Forwarded-For (app/local), and each chaos client dials it
// from its own 127.x.y.7, so no honest user shares an address-level limit
// with the storm.
var chaosLimits = []string{
	"QUOTA_USER_SENDS=600/1m", "QUOTA_USER_JOINS=300/1m", "QUOTA_USER_ROOMS=30/1m", "QUOTA_USER_RESUMES=100/1m",
	"QUOTA_ADDRESS_CONNECTS=300/1m", "MAX_CONNECTIONS_PER_USER=10", "MAX_CONNECTIONS_PER_ADDRESS=20",
}

// hostileFloors: each kind of refusal the hostile users must have drawn, at
// least this often, in a run of any length (chaos.Floors.Hostile).
var hostileFloors = map[string]int{
	"poison nul-text": 5, "poison nul-id": 5, "poison invalid-json": 5, "poison oversize": 5, "poison nul-sub": 5,
	protocol.QuotaUserSends: 20, protocol.QuotaUserRooms: 20, protocol.QuotaUserJoins: 20, protocol.QuotaUserResumes: 20,
	protocol.QuotaAddressConnects: 20, protocol.QuotaUserConnections: 20, protocol.QuotaAddressConnections: 20,
}

// The hostile users' pace: fast enough to pass every limit within seconds,
// slow enough to leave the 2-core machine's CPU to the run.
const (
	hostileFloodConns = 3
	hostileFloodEvery = 25 * time.Millisecond  // per connection: 120 sends a second in all
	hostileSprayEvery = 50 * time.Millisecond  // a new room, then an old one, ...: joins pass 300 in 15 s
	hostileResumeEvy  = 125 * time.Millisecond // far resumes pass 100 in 12.5 s, joins 300 in 37.5 s
	hostileStormEvery = 25 * time.Millisecond  // upgrade and close at once
	hostileHoldEvery  = 6 * time.Second        // a round of held connections past a limit
	hostilePoisonEvy  = 200 * time.Millisecond // one poison, of each kind in turn
)

// hostileEnabled: SWITCHBOARD_CHAOS_HOSTILE=off leaves the hostile users
// idle, which must fail the run on its floors (the floors' own test).
func hostileEnabled() bool { return os.Getenv("SWITCHBOARD_CHAOS_HOSTILE") != "off" }

// hostileUser is one attacker. It has a chaos client number, so that what
// it sent, its acks and refusals are in the history.
type hostileUser struct {
	r         *chaosRun
	i         int
	name      string
	behaviour string
	trace     func(conn int, sent bool, frame []byte)
	conns     atomic.Int64

	mu    sync.Mutex
	other map[string]int // outcomes neither the refusal sought nor a breach (a fault's doing, mostly)
}

func (r *chaosRun) newHostile(i int) *hostileUser {
	u := &hostileUser{r: r, i: i, name: fmt.Sprintf("hostile-%d", i), other: map[string]int{},
		behaviour: hostileBehaviours[(i-(chaosClients-chaosHostile))%len(hostileBehaviours)]}
	u.trace = r.rec.Tracer(i, 1, u.name)
	r.hostile = append(r.hostile, u)
	return u
}

func (u *hostileUser) run(stop <-chan struct{}) {
	switch u.behaviour {
	case hostilePoison:
		u.poison(stop)
	case hostileFlood:
		var wg sync.WaitGroup
		for k := range hostileFloodConns {
			wg.Add(1)
			go func() { defer wg.Done(); u.flood(stop, k) }()
		}
		wg.Wait()
	case hostileSpray:
		u.spray(stop)
	case hostileResumes:
		u.resumeStorm(stop)
	case hostileStorm:
		var wg sync.WaitGroup
		for _, f := range []func(<-chan struct{}){u.connectLoop, u.holdPerUser, u.holdPerAddress} {
			wg.Add(1)
			go func() { defer wg.Done(); f(stop) }()
		}
		wg.Wait()
	}
}

// refused records an attempt refused as it must be; breach, one that got
// through; count, any other outcome.
func (u *hostileUser) refused(what, how string) {
	u.r.rec.Record(chaos.Event{Client: u.i, Kind: chaos.Hostile, Code: what, Text: how})
}

func (u *hostileUser) breach(what, how string) {
	u.r.rec.Record(chaos.Event{Client: u.i, Kind: chaos.Breach, Code: what, Text: how})
}

func (u *hostileUser) count(what string) {
	u.mu.Lock()
	u.other[what]++
	u.mu.Unlock()
}

// hostileWait waits d; false if stop closes first.
func hostileWait(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// hostileConn is a raw WebSocket of a hostile user: it writes what it is
// told, and hands every frame but messages to on from its reader.
type hostileConn struct {
	ws    *websocket.Conn
	n     int
	trace func(conn int, sent bool, frame []byte) // nil: not recorded
	on    func(protocol.ServerFrame)
	wmu   sync.Mutex
	done  chan struct{}
	code  int // the close code once done; 1006 without a close frame
}

// hostileRefusal is an upgrade refused with an HTTP status.
type hostileRefusal struct {
	status int
	quota  string
}

func (r *hostileRefusal) String() string {
	return strings.TrimSpace(fmt.Sprintf("%d %s", r.status, r.quota))
}

// open upgrades a connection as user from src through the balancer.
func (u *hostileUser) open(src net.IP, user string, traced bool, on func(protocol.ServerFrame)) (*hostileConn, *hostileRefusal, error) {
	tok, err := u.r.s.Token(user, time.Hour)
	if err != nil {
		return nil, nil, err
	}
	return u.dial(src, tok, traced, on)
}

func (u *hostileUser) dial(src net.IP, tok string, traced bool, on func(protocol.ServerFrame)) (*hostileConn, *hostileRefusal, error) {
	nd := &net.Dialer{Timeout: 5 * time.Second}
	if src != nil {
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}
	ws, resp, err := d.Dial(u.r.s.wsURL, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		if resp == nil {
			return nil, nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var b struct {
			Quota string `json:"quota"`
		}
		_ = json.Unmarshal(body, &b)
		return nil, &hostileRefusal{status: resp.StatusCode, quota: b.Quota}, nil
	}
	c := &hostileConn{ws: ws, n: int(u.conns.Add(1)), on: on, done: make(chan struct{})}
	if traced {
		c.trace = u.trace
	}
	go c.read()
	return c, nil, nil
}

var messagePrefix = []byte(`{"op":"message"`)

func (c *hostileConn) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.code = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code = ce.Code
			}
			return
		}
		if bytes.HasPrefix(data, messagePrefix) {
			continue // the rooms' traffic: a hostile user's streams are not checked
		}
		var f protocol.ServerFrame
		if json.Unmarshal(data, &f) != nil || f.Op == protocol.OpMessage {
			continue
		}
		// The welcome names the instance an ack comes from; acks and the
		// refusals of sends are what the checker holds a hostile user to.
		if c.trace != nil && (f.Op == protocol.OpWelcome || f.Op == protocol.OpAck || (f.Op == protocol.OpError && f.Ref != "")) {
			c.trace(c.n, false, data)
		}
		if c.on != nil {
			c.on(f)
		}
	}
}

func (c *hostileConn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// send writes a send frame, recorded first if the connection is traced.
func (c *hostileConn) send(frame []byte) error {
	if c.trace != nil {
		c.trace(c.n, true, frame)
	}
	return c.write(frame)
}

func (c *hostileConn) join(room string, since *int64) error {
	f, _ := json.Marshal(protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: since})
	return c.write(f)
}

func (c *hostileConn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *hostileConn) close() {
	c.ws.Close()
	<-c.done
}

// failure names a dial that got no answer, briefly.
func failure(ref *hostileRefusal, err error) string {
	if ref != nil {
		return "upgrade " + ref.String()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "dial timeout"
	}
	return "dial error"
}

// poison sends, in turn, a send with NUL in its text, one with NUL in its
// id, invalid JSON and a frame past MAX_MESSAGE_BYTES (the server closes
// with 1009; the next poison reconnects), on a connection joined to one of
// the honest rooms, so that a poison accepted would reach them; and
// upgrades with a token whose sub holds NUL. Each waits for its answer.
func (u *hostileUser) poison(stop <-chan struct{}) {
	src := u.r.s.source(u.i)
	room := u.r.rooms[u.i%len(u.r.rooms)]
	answers := make(chan protocol.ServerFrame, 64)
	on := func(f protocol.ServerFrame) {
		if f.Op == protocol.OpAck || f.Op == protocol.OpError || f.Op == protocol.OpJoined {
			select {
			case answers <- f:
			default:
			}
		}
	}
	nulSub, mintErr := u.r.s.Token(fmt.Sprintf("hostile\x00%d", u.i), time.Hour)
	if mintErr != nil {
		u.count("poison nul-sub: the target does not mint it")
	}
	var c *hostileConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	kinds := []string{"nul-text", "nul-id", "invalid-json", "oversize", "nul-sub"}
	for n := 0; hostileWait(stop, hostilePoisonEvy); n++ {
		kind := kinds[n%len(kinds)]
		what := "poison " + kind
		if kind == "nul-sub" {
			if mintErr != nil {
				continue
			}
			cn, ref, err := u.dial(src, nulSub, false, nil)
			switch {
			case ref != nil && ref.status == http.StatusUnauthorized:
				u.refused(what, "401")
			case cn != nil:
				cn.close()
				u.breach(what, "upgraded")
			default:
				u.count(what + ": " + failure(ref, err))
			}
			continue
		}
		if c == nil || c.closed() {
			if c != nil {
				c.close()
				c = nil
			}
			cn, ref, err := u.open(src, u.name, true, on)
			if cn == nil {
				u.count("poison: " + failure(ref, err))
				continue
			}
			if !awaitJoined(cn, answers, room) {
				cn.close()
				u.count("poison: join not answered")
				continue
			}
			c = cn
		}
		for len(answers) > 0 {
			<-answers
		}
		id := fmt.Sprintf("%s-p%d", u.name, n)
		head := `{"op":"send","room":"` + room + `","id":"` + id
		var frame string
		switch kind {
		case "nul-text":
			frame = head + `","text":"poison \u0000 in the text"}`
		case "nul-id":
			frame = head + `\u0000","text":"poison: NUL in the id"}`
		case "invalid-json":
			frame = head + `","text":"unterminated`
		case "oversize":
			frame = head + `","text":"` + strings.Repeat("x", 64<<10) + `"}`
		}
		cn := c
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			if kind == "oversize" {
				_ = cn.write([]byte(frame)) // not recorded: 64 KB a time; it may block while the server closes
			} else {
				_ = cn.send([]byte(frame))
			}
		}()
		u.poisonAnswer(cn, answers, what, id)
		if cn.closed() {
			c = nil
			cn.close()
		}
		<-wrote
	}
}

// awaitJoined joins room on c and waits for its joined.
func awaitJoined(c *hostileConn, answers <-chan protocol.ServerFrame, room string) bool {
	if c.join(room, nil) != nil {
		return false
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-answers:
			if f.Op == protocol.OpJoined && f.Room == room {
				return true
			}
			if f.Op == protocol.OpError && f.Room == room {
				return false
			}
		case <-c.done:
			return false
		case <-deadline:
			return false
		}
	}
}

// poisonAnswer waits for what answers a poison: bad_request (with the
// send's ref for NUL in the text), or close 1009 for an oversize frame.
func (u *hostileUser) poisonAnswer(c *hostileConn, answers <-chan protocol.ServerFrame, what, id string) {
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-answers:
			switch {
			case f.Op == protocol.OpAck:
				u.breach(what, fmt.Sprintf("acked with seq %d in %s", f.Seq, f.Room))
			case f.Op == protocol.OpError && f.Code == protocol.CodeBadRequest && what != "poison oversize" &&
				(what != "poison nul-text" || f.Ref == id):
				u.refused(what, "bad_request")
			case f.Op == protocol.OpError:
				u.count(fmt.Sprintf("%s: %s ref %q", what, f.Code, f.Ref))
			default:
				continue
			}
			return
		case <-c.done:
			if what == "poison oversize" && c.code == protocol.CloseTooLarge {
				u.refused(what, "close 1009")
			} else {
				u.count(fmt.Sprintf("%s: closed %d", what, c.code))
			}
			return
		case <-deadline:
			u.count(what + ": no answer in 5 s")
			c.ws.Close() // no write may go on beside the next one
			<-c.done
			return
		}
	}
}

// flood sends to two of the honest rooms as fast as hostileFloodEvery lets
// it on one of the user's connections, ignoring every retry_after_ms, and
// reconnects when a fault drops it. What is acked is an ordinary message,
// recorded and checked like any other.
func (u *hostileUser) flood(stop <-chan struct{}, k int) {
	src := u.r.s.source(u.i)
	rooms := []string{u.r.rooms[k%len(u.r.rooms)], u.r.rooms[(k+len(u.r.rooms)/2)%len(u.r.rooms)]}
	on := func(f protocol.ServerFrame) {
		switch {
		case f.Op == protocol.OpAck:
			u.count("send flood: acked")
		case f.Op == protocol.OpError && f.Code == protocol.CodeRateLimited && f.Quota == protocol.QuotaUserSends:
			u.refused(f.Quota, "rate_limited")
		case f.Op == protocol.OpError && f.Code != protocol.CodeHistoryGap:
			u.count(strings.TrimSpace("send flood: " + f.Code + " " + f.Quota))
		}
	}
	n := 0
	for {
		c, ref, err := u.open(src, u.name, true, on)
		if c == nil {
			u.count("send flood: " + failure(ref, err))
			if !hostileWait(stop, 200*time.Millisecond) {
				return
			}
			continue
		}
		for _, room := range rooms {
			_ = c.join(room, nil)
		}
		if !hostileWait(stop, 300*time.Millisecond) { // the joins answered, mostly
			c.close()
			return
		}
		tick := time.NewTicker(hostileFloodEvery)
		for !c.closed() {
			select {
			case <-stop:
				tick.Stop()
				c.close()
				return
			case <-tick.C:
			}
			n++
			f, _ := json.Marshal(protocol.ClientFrame{Op: protocol.OpSend, Room: rooms[n%len(rooms)],
				ID: fmt.Sprintf("%s-f%d-%d", u.name, k, n), Text: fmt.Sprintf("flood %d/%d", k, n)})
			if c.send(f) != nil {
				break
			}
		}
		tick.Stop()
		c.close()
		u.count("send flood: reconnect")
	}
}

// spray joins, in turn, a room nobody has written to (each join creates
// one: QUOTA_USER_ROOMS) and one of the honest rooms (QUOTA_USER_JOINS),
// leaving each once joined.
func (u *hostileUser) spray(stop <-chan struct{}) {
	u.joinLoop(stop, hostileSprayEvery, "join spray", func(n int) (string, *int64) {
		if n%2 == 0 {
			return fmt.Sprintf("spray-%d-%d", u.i, n), nil
		}
		return u.r.rooms[(n/2)%len(u.r.rooms)], nil
	}, true, protocol.QuotaUserRooms, protocol.QuotaUserJoins)
}

// resumeStorm resumes the honest rooms in turn from seq 1, far past
// Redis's history once they are busy: each admitted one reads Postgres.
func (u *hostileUser) resumeStorm(stop <-chan struct{}) {
	since := int64(1)
	u.joinLoop(stop, hostileResumeEvy, "resume storm", func(n int) (string, *int64) {
		return u.r.rooms[n%len(u.r.rooms)], &since
	}, false, protocol.QuotaUserResumes)
}

// joinLoop writes the join next(n) names every every on one connection,
// reconnecting when a fault drops it; a rate_limited naming one of quotas
// is the refusal sought. leave: leave each room once joined.
func (u *hostileUser) joinLoop(stop <-chan struct{}, every time.Duration, what string, next func(int) (string, *int64), leave bool, quotas ...string) {
	src := u.r.s.source(u.i)
	leaves := make(chan string, 256)
	on := func(f protocol.ServerFrame) {
		switch {
		case f.Op == protocol.OpJoined:
			u.count(what + ": joined")
			if leave {
				select {
				case leaves <- f.Room:
				default:
				}
			}
		case f.Op == protocol.OpError && f.Code == protocol.CodeRateLimited && slices.Contains(quotas, f.Quota):
			u.refused(f.Quota, "rate_limited")
		case f.Op == protocol.OpError && f.Code != protocol.CodeHistoryGap:
			u.count(strings.TrimSpace(what + ": " + f.Code + " " + f.Quota))
		}
	}
	var c *hostileConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for n := 0; hostileWait(stop, every); n++ {
		if c == nil || c.closed() {
			if c != nil {
				c.close()
				c = nil
			}
			cn, ref, err := u.open(src, u.name, false, on)
			if cn == nil {
				u.count(what + ": " + failure(ref, err))
				continue
			}
			c = cn
		}
		for len(leaves) > 0 {
			f, _ := json.Marshal(protocol.ClientFrame{Op: protocol.OpLeave, Room: <-leaves})
			_ = c.write(f)
		}
		room, since := next(n)
		_ = c.join(room, since)
	}
}

// connectLoop upgrades and closes at once, in a loop, from its own address:
// past QUOTA_ADDRESS_CONNECTS.
func (u *hostileUser) connectLoop(stop <-chan struct{}) {
	src := u.r.s.source(u.i)
	for hostileWait(stop, hostileStormEvery) {
		c, ref, err := u.open(src, u.name+"-storm", false, nil)
		switch {
		case c != nil:
			c.close()
			u.count("reconnect storm: upgraded")
		case ref != nil && ref.status == http.StatusTooManyRequests && ref.quota == protocol.QuotaAddressConnects:
			u.refused(ref.quota, "429")
		default:
			u.count("reconnect storm: " + failure(ref, err))
		}
	}
}

// holdPerUser opens connections of one user from another address of its
// own and holds them until three upgrades are refused (past
// MAX_CONNECTIONS_PER_USER), then closes them all; a round every
// hostileHoldEvery.
func (u *hostileUser) holdPerUser(stop <-chan struct{}) {
	u.hold(stop, u.r.s.source(u.i+1000), protocol.QuotaUserConnections, func(int) string { return u.name + "-held" })
}

// holdPerAddress does the same with a new user for each connection, from a
// third address (past MAX_CONNECTIONS_PER_ADDRESS).
func (u *hostileUser) holdPerAddress(stop <-chan struct{}) {
	u.hold(stop, u.r.s.source(u.i+2000), protocol.QuotaAddressConnections, func(k int) string { return fmt.Sprintf("%s-held-%d", u.name, k) })
}

func (u *hostileUser) hold(stop <-chan struct{}, src net.IP, quota string, user func(int) string) {
	for hostileWait(stop, hostileHoldEvery) {
		var held []*hostileConn
		for k, refusals := 0, 0; refusals < 3 && k < 100; k++ {
			c, ref, err := u.open(src, user(k), false, nil)
			switch {
			case c != nil:
				held = append(held, c)
				continue
			case ref != nil && ref.status == http.StatusTooManyRequests && ref.quota == quota:
				u.refused(quota, fmt.Sprintf("429 with %d open", len(held)))
			default:
				u.count(fmt.Sprintf("reconnect storm (%s): %s with %d open", quota, failure(ref, err), len(held)))
			}
			refusals++
		}
		for _, c := range held {
			c.close()
		}
	}
}

// balancerEntry is one line of NGINX's access log.
type balancerEntry struct {
	addr   string
	at     time.Time
	path   string
	status int
}

// Both the combined format and the repository's ("$remote_addr [$time_local]
// "$request_method $uri $server_protocol" $status ...").
var accessLine = regexp.MustCompile(`^(\S+) .*?\[([^\]]+)\] "\S+ ([^ "?]+)[^"]*" (\d{3}) `)

// readBalancerLog reads NGINX's access log. An upgrade is logged when its
// connection ends, a refusal when it is answered.
func readBalancerLog(path string) ([]balancerEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var es []balancerEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, _ := time.Parse("02/Jan/2006:15:04:05 -0700", m[2])
		status, _ := strconv.Atoi(m[4])
		es = append(es, balancerEntry{addr: m[1], at: at, path: m[3], status: status})
	}
	return es, sc.Err()
}

// balancer reads the access log of the local target in dir: a 429 to an
// honest user's address (an upgrade, or a history read of the client's gap
// filling) goes into the history as a refusal by quota, which the checker
// holds against it (honest-unthrottled). It returns the honest addresses'
// most upgrades in any minute and the 429s by whose address they were.
func (r *chaosRun) balancer(dir string) (peakUpgrades int, tooMany map[string]int, err error) {
	es, err := readBalancerLog(dir + "/nginx/access.log")
	if err != nil {
		return 0, nil, err
	}
	honest := map[string]int{}
	for i := range chaosClients - chaosHostile {
		honest[r.s.source(i).String()] = i
	}
	tooMany = map[string]int{}
	upgrades := map[string][]time.Time{}
	for _, e := range es {
		i, ok := honest[e.addr]
		if ok && e.path == "/ws" {
			upgrades[e.addr] = append(upgrades[e.addr], e.at)
		}
		if e.status != http.StatusTooManyRequests {
			continue
		}
		if !ok {
			tooMany["hostile"]++
			continue
		}
		tooMany["honest"]++
		r.rec.Record(chaos.Event{Client: i, Kind: chaos.Refused, Time: e.at, Code: "http 429",
			Quota: "429 at " + e.path + " (balancer log)", Text: e.addr})
	}
	for _, ts := range upgrades {
		slices.SortFunc(ts, time.Time.Compare)
		peakUpgrades = max(peakUpgrades, peakIn(ts, time.Minute))
	}
	return peakUpgrades, tooMany, nil
}

// peakIn is the most of times (ascending) within any window.
func peakIn(times []time.Time, window time.Duration) int {
	most, lo := 0, 0
	for hi, t := range times {
		for t.Sub(times[lo]) >= window {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// honestPeaks is the most any honest client did in any minute: sends
// written (retries included: each counts against QUOTA_USER_SENDS), joins
// written (resumes included) and far resumes (since more than history
// behind the room's position at the join).
func honestPeaks(events []chaos.Event, history int64) (sends, joins, far int) {
	type key struct {
		client, conn int
		room         string
	}
	var sent, joined, farAt = map[int][]time.Time{}, map[int][]time.Time{}, map[int][]time.Time{}
	pending := map[key]chaos.Event{}
	for _, e := range events {
		if e.Client < 0 || e.Client >= chaosClients-chaosHostile || e.Conn == 0 {
			continue
		}
		k := key{e.Client, e.Conn, e.Room}
		switch e.Kind {
		case chaos.Sent:
			sent[e.Client] = append(sent[e.Client], e.Time)
		case chaos.Joining:
			joined[e.Client] = append(joined[e.Client], e.Time)
			pending[k] = e
		case chaos.Joined:
			if j, ok := pending[k]; ok && j.HasSince && e.Seq-j.Since > history {
				farAt[e.Client] = append(farAt[e.Client], j.Time)
			}
			delete(pending, k)
		}
	}
	peak := func(m map[int][]time.Time) int {
		most := 0
		for _, ts := range m {
			slices.SortFunc(ts, time.Time.Compare)
			most = max(most, peakIn(ts, time.Minute))
		}
		return most
	}
	return peak(sent), peak(joined), peak(farAt)
}

// hostileReport is the hostile users' line of the run's report.
func (r *chaosRun) hostileReport(events []chaos.Event) string {
	if len(r.hostile) == 0 {
		return fmt.Sprintf("chaos: hostile users DISABLED (SWITCHBOARD_CHAOS_HOSTILE=off); floors %v", hostileFloors)
	}
	var who []string
	other := map[string]int{}
	for _, u := range r.hostile {
		who = append(who, fmt.Sprintf("%d %s", u.i, u.behaviour))
		u.mu.Lock()
		maps.Copy(other, u.other)
		u.mu.Unlock()
	}
	breaches := 0
	for _, e := range events {
		if e.Kind == chaos.Breach {
			breaches++
		}
	}
	return fmt.Sprintf("chaos: hostile users (%s): refused as they must be %v (floors %v); %d breaches; other outcomes %v",
		strings.Join(who, ", "), chaos.HostileRefusals(events), hostileFloors, breaches, other)
}
