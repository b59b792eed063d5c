package tests

// The abuse suite (issue 26, docs/abuse.md): nothing one client sends stops
// or slows the service for everyone else. Each scenario runs a steady
// background of honest users, 6 on every instance in 2 rooms, each sending
// 2 messages a second; runs one attack; checks that the attack was refused
// the way docs/abuse.md says (code, quota, HTTP status, and
// chat_quota_refused_total{quota} rising); and checks that every honest
// send was acked within a second at p99, delivered to every member of its
// room and stored in Postgres within 5 s. Each prints one line of figures.
// The limits attacked are read from the target's settings (the local
// target's environment, the kind stack's Deployment), never assumed.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/tests/target"
)

// runTag keeps this run's attackers apart from an earlier run's on a
// long-lived target, whose quota windows may still count them.
var runTag = strconv.FormatInt(time.Now().UnixNano()%1e6, 36)

// Honest users' bounds while an attack runs.
const (
	honestAckP99 = time.Second
	honestStored = 5 * time.Second
	honestWindow = 10 * time.Second // the shortest time honest users are measured under an attack
	attackSpan   = 10 * time.Second // what a flood of a fixed number of requests is spread over
)

// settings are the target's instance settings: the local target's
// environment, or the plain env of the Deployment on Kubernetes (values
// from its Secret are not read, and their defaults stand).
func (s *suite) settings(t *testing.T) config.Config {
	t.Helper()
	env := map[string]string{}
	var lines []string
	switch tg := s.Target.(type) {
	case *target.Local:
		lines = tg.Chats[0].Env
	default:
		out, err := exec.Command("kubectl", "--context", os.Getenv("SWITCHBOARD_KUBE_CONTEXT"), "--namespace", os.Getenv("SWITCHBOARD_NAMESPACE"),
			"get", "deployment/chat", "-o", `jsonpath={range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}`).CombinedOutput()
		if err != nil {
			t.Fatalf("read the chat Deployment's settings: %v: %s", err, out)
		}
		lines = strings.Split(string(out), "\n")
	}
	for _, kv := range lines {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	cfg, err := config.Load(func(k string) string {
		if k == "JWT_SECRET" { // not a limit; the target's own may be in a Secret
			return strings.Repeat("x", config.MinSecretBytes)
		}
		return env[k]
	})
	if err != nil {
		t.Logf("target settings: %v (defaults stand for those)", err)
	}
	return cfg
}

// admits is the most quota r may admit from from to to: its count in each
// fixed window the span touches (windows are aligned on the Unix epoch, as
// app/quota counts them; a second either side for clocks), plus a fifth
// for what the other instances admit within one sync interval.
func admits(r config.Rate, from, to time.Time) int {
	first := from.Add(-time.Second).UnixNano() / int64(r.Per)
	last := to.Add(time.Second).UnixNano() / int64(r.Per)
	return r.Count*int(last-first+1) + r.Count/5 + 20
}

// beyond is a number of attempts past what r admits even when an attack
// straddles two windows.
func beyond(r config.Rate) int { return 2*r.Count + r.Count/5 + 60 }

// quotaRate is the limit in cfg of the quota named name; the test is
// skipped when that quota is off on the target.
func quotaRate(t *testing.T, cfg config.Config, name string) config.Rate {
	t.Helper()
	r, ok := map[string]config.Rate{
		protocol.QuotaUserSends: cfg.Quotas.UserSends, protocol.QuotaUserJoins: cfg.Quotas.UserJoins,
		protocol.QuotaUserRooms: cfg.Quotas.UserRooms, protocol.QuotaUserResumes: cfg.Quotas.UserResumes,
		protocol.QuotaUserHistory: cfg.Quotas.UserHistory, protocol.QuotaAddressConnects: cfg.Quotas.AddressConnects,
	}[name]
	if !ok {
		t.Fatalf("no rate quota %q", name)
	}
	if r.Off() {
		t.Skipf("quota %s is off on this target", name)
	}
	return r
}

// within polls check every 100ms for up to timeout (terratest's retry) and
// returns its last error instead of failing the test.
func within(t *testing.T, what string, timeout time.Duration, check func() error) error {
	_, err := retry.DoWithRetryE(t, what, max(1, int(timeout/(100*time.Millisecond))), 100*time.Millisecond, func() (string, error) {
		return "", check()
	})
	return err
}

// --- History reads --------------------------------------------------------

var readers atomic.Int64

// readerToken is a token for a user of its own: the suite's own history
// reads never meet the history quota.
func (s *suite) readerToken() (string, error) {
	return s.Token(fmt.Sprintf("reader-%s-%d", runTag, readers.Add(1)), 5*time.Minute)
}

// historyGet reads one page of room's history through the balancer.
func historyGet(hc *http.Client, endpoint, room, token string, before int64, limit int) (int, http.Header, []byte, error) {
	u := fmt.Sprintf("%s/rooms/%s/messages?limit=%d", endpoint, room, limit)
	if before > 0 {
		u += fmt.Sprintf("&before=%d", before)
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

func historyFrames(body []byte) ([]protocol.ServerFrame, error) {
	var page struct {
		Messages []protocol.ServerFrame `json:"messages"`
	}
	err := json.Unmarshal(body, &page)
	return page.Messages, err
}

// storedIDs pages through room's stored messages: id → seq.
func (s *suite) storedIDs(room string) (map[string]int64, error) {
	tok, err := s.readerToken()
	if err != nil {
		return nil, err
	}
	ids := map[string]int64{}
	var before int64
	for {
		status, _, body, err := historyGet(http.DefaultClient, s.Endpoint(), room, tok, before, 500)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, errorf("history of %s: status %d: %s", room, status, body)
		}
		page, err := historyFrames(body)
		if err != nil || len(page) == 0 {
			return ids, err
		}
		for _, m := range page {
			ids[m.ID] = m.Seq
		}
		if before = page[0].Seq; before <= 1 {
			return ids, nil
		}
	}
}

// newestStored is the newest seq of room in Postgres (0 for none).
func (s *suite) newestStored(room string) (int64, error) {
	tok, err := s.readerToken()
	if err != nil {
		return 0, err
	}
	status, _, body, err := historyGet(http.DefaultClient, s.Endpoint(), room, tok, 0, 1)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, errorf("history of %s: status %d", room, status)
	}
	page, err := historyFrames(body)
	if err != nil || len(page) == 0 {
		return 0, err
	}
	return page[len(page)-1].Seq, nil
}

// --- The honest background ------------------------------------------------

// honest is the background of an attack: 6 users on every instance, half
// in each of two rooms, each sending 2 messages a second with ids, and a
// sampler of each room's newest stored seq every 2 s.
type honest struct {
	s       *suite
	rooms   [2]string
	members [2][]*client.Client
	loads   [2]*load
	halted  sync.Once
	stop    chan struct{}
	sampled sync.WaitGroup
	mu      sync.Mutex
	samples [2][]int64
	failed  int // samples not read
	checks  []func(*testing.T)
}

// honestFigures is what the honest users saw during the attack.
type honestFigures struct {
	sent, acked, persisted int
	ack                    []time.Duration
	storedIn               time.Duration // from the last ack until all were stored
	rose, samples          int           // 2-second samples in which a room's newest stored seq rose
}

func (f honestFigures) String() string {
	return fmt.Sprintf("honest ack %s; sent %d, acked %d, persisted %d (all %s after the load stopped); stored seq rose in %d of %d samples",
		percentiles(f.ack), f.sent, f.acked, f.persisted, f.storedIn.Round(time.Millisecond), f.rose, f.samples)
}

// startHonest dials the honest users from sources first.. (40 apart for
// each onEveryInstance round) and starts them.
func (s *suite) startHonest(t *testing.T, prefix string, first int) *honest {
	t.Helper()
	h := &honest{s: s, stop: make(chan struct{})}
	for r := range h.rooms {
		h.rooms[r] = chattest.Room()
	}
	for k := range 6 {
		for _, c := range s.onEveryInstance(t, fmt.Sprintf("%s%d", prefix, k), first+40*k) {
			chattest.Join(t, c, h.rooms[k%2])
			h.members[k%2] = append(h.members[k%2], c)
		}
	}
	for r, room := range h.rooms {
		h.loads[r] = startLoad(room, h.members[r], 500*time.Millisecond, 0)
	}
	h.sampled.Add(1)
	go h.sample()
	t.Cleanup(h.halt)
	return h
}

func (h *honest) sample() {
	defer h.sampled.Done()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		for r, room := range h.rooms {
			seq, err := h.s.newestStored(room)
			h.mu.Lock()
			if err != nil {
				h.failed++
			} else {
				h.samples[r] = append(h.samples[r], seq)
			}
			h.mu.Unlock()
		}
	}
}

// halt stops the load and the sampler (once).
func (h *honest) halt() {
	h.halted.Do(func() {
		close(h.stop)
		h.sampled.Wait()
		for _, l := range h.loads {
			l.Stop()
		}
	})
}

// later runs check once the honest messages are stored, that is, once the
// persist writers have moved past the attack.
func (h *honest) later(check func(*testing.T)) { h.checks = append(h.checks, check) }

// finish stops the honest load and checks it: every send acked, p99 under
// honestAckP99, every ack delivered to every member once and in order,
// every acked message stored within honestStored, the stored seq rising
// all along. It fills f as it goes.
func (h *honest) finish(t *testing.T, f *honestFigures) {
	t.Helper()
	h.halt()
	var acked [2]map[string]int64
	failed := map[string]int{}
	for r, l := range h.loads {
		acked[r] = l.acked
		f.acked += len(l.acked)
		f.sent += len(l.acked)
		for e, n := range l.failed {
			failed[e] += n
			f.sent += n
		}
		f.ack = append(f.ack, l.took...)
	}
	if len(failed) > 0 {
		t.Errorf("honest sends failed during the attack: %v", failed)
	}
	if p99 := quantile(f.ack, 0.99); p99 > honestAckP99 {
		t.Errorf("honest ack p99 %s during the attack, want under %s", p99, honestAckP99)
	}
	for r := range h.samples {
		for i := 1; i < len(h.samples[r]); i++ {
			f.samples++
			if h.samples[r][i] > h.samples[r][i-1] {
				f.rose++
			}
		}
	}
	if f.rose < f.samples {
		t.Errorf("the honest rooms' newest stored seq stood still in %d of %d 2-second samples during the attack: %v", f.samples-f.rose, f.samples, h.samples)
	}
	stopped := time.Now()
	err := within(t, "honest messages stored", 30*time.Second, func() error {
		stored, missing := 0, []string{}
		for r, room := range h.rooms {
			ids, err := h.s.storedIDs(room)
			if err != nil {
				return err
			}
			for id, seq := range acked[r] {
				if ids[id] == seq {
					stored++
				} else if len(missing) < 5 {
					missing = append(missing, fmt.Sprintf("%s/%s", room, id))
				}
			}
		}
		f.persisted = stored
		if stored < f.acked {
			return errorf("%d of %d acked honest messages stored; missing e.g. %v", stored, f.acked, missing)
		}
		return nil
	})
	f.storedIn = time.Since(stopped)
	if err != nil {
		t.Errorf("honest messages not all stored: %v", err)
	} else if f.storedIn > honestStored {
		t.Errorf("honest messages all stored %s after the last ack, want within %s", f.storedIn.Round(time.Millisecond), honestStored)
	}
	for _, check := range h.checks {
		check(t)
	}
	for r := range h.rooms {
		if len(acked[r]) > 0 {
			everyAckedOnce(t, h.members[r], acked[r])
		}
	}
}

// quotaRefused sums chat_quota_refused_total{quota} over the instances.
func (s *suite) quotaRefused(t *testing.T, quota string) float64 {
	var n float64
	for _, in := range s.instances(t) {
		n += chattest.Metric(t, in.URL, `chat_quota_refused_total{quota="`+quota+`"`)
	}
	return n
}

// underAttack runs attack against a background of honest users (from
// sources first..first+240) and checks them afterwards, and that
// chat_quota_refused_total rose for each of quotas. attack returns the
// attacker's figures; the line of figures is printed even if a check fails.
func (s *suite) underAttack(t *testing.T, name string, first int, quotas []string, attack func(*testing.T, *honest) string) {
	t.Helper()
	before := map[string]float64{}
	for _, q := range quotas {
		before[q] = s.quotaRefused(t, q)
	}
	h := s.startHonest(t, "honest-", first)
	var hf honestFigures
	attacker := "(attack did not finish)"
	began := time.Now()
	var took time.Duration
	defer func() {
		report.Logf(t, "abuse %s (%s): %s; attacker: %s", name, took.Round(100*time.Millisecond), hf, attacker)
	}()
	attacker = attack(t, h)
	took = time.Since(began)
	// The honest users are measured over honestWindow at least, however
	// quickly the attack was refused: its aftermath counts too.
	<-time.After(time.Until(began.Add(honestWindow)))
	h.finish(t, &hf)
	for _, q := range quotas {
		if err := within(t, "chat_quota_refused_total rises", 10*time.Second, func() error {
			if n := s.quotaRefused(t, q); n <= before[q] {
				return errorf("chat_quota_refused_total{quota=%q} summed over the instances still %v", q, n)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}

// newcomer checks that a user who is not the attacker connects from source
// i, joins a room and gets a send acked.
func (s *suite) newcomer(user string, i int) error {
	tok, err := s.Token(user, time.Hour)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: s.wsURL, Token: tok, LocalAddr: s.source(i), NoReconnect: true})
	if err != nil {
		return fmt.Errorf("newcomer %s: %w", user, err)
	}
	defer c.Close()
	room := chattest.Room()
	if _, err := c.Join(ctx, room); err != nil {
		return fmt.Errorf("newcomer %s: %w", user, err)
	}
	if _, err := c.Send(ctx, room, "hello"); err != nil {
		return fmt.Errorf("newcomer %s: %w", user, err)
	}
	return nil
}

// --- Raw attacking connections --------------------------------------------

// rawConn is a WebSocket without the client library, whose every frame
// from the server is counted by a reader goroutine.
type rawConn struct {
	*websocket.Conn
	mu       sync.Mutex
	counts   map[string]int   // by frameKey
	refless  int              // rate_limited refusals without a ref
	retry    []int64          // retry_after_ms of quota refusals
	last     map[string]int64 // room → seq of the last message
	disorder int              // messages not right after the one before in their room
	code     int              // close code (1006: none) once the reader ended
	closedAt time.Time
	done     chan struct{}
	heard    chan struct{} // a frame came (buffered 1)
}

// frameKey names a frame: its op, or "error code[/quota]".
func frameKey(f protocol.ServerFrame) string {
	if f.Op != protocol.OpError {
		return f.Op
	}
	if f.Quota != "" {
		return f.Code + "/" + f.Quota
	}
	return f.Code
}

// handshakeRefusal is an upgrade refused with an HTTP status.
type handshakeRefusal struct {
	status     int
	retryAfter string
	quota      string
}

func (r *handshakeRefusal) String() string {
	return fmt.Sprintf("%d quota %q Retry-After %q", r.status, r.quota, r.retryAfter)
}

// aim is where the i-th attacking connection goes: through the balancer
// from source i where the balancer sees sources, else to instance i's own
// URL, so that the attack spreads over the instances either way.
func (s *suite) aim(ins []target.Instance, i int) (string, net.IP) {
	if s.loopback {
		return s.wsURL, s.source(i)
	}
	return strings.Replace(ins[i%len(ins)].URL, "http", "ws", 1) + "/ws", nil
}

// openRaw upgrades a connection for user to wsURL from src and reads the
// welcome. A refused upgrade returns its refusal. quiet leaves the
// server's pings unanswered (for a connection whose writes are the test's
// own bytes).
func (s *suite) openRaw(t testing.TB, wsURL string, src net.IP, user string, quiet bool) (*rawConn, *handshakeRefusal, error) {
	tok, err := s.Token(user, time.Hour)
	if err != nil {
		return nil, nil, err
	}
	conn, ref, err := upgradeWith(wsURL, src, tok)
	if conn == nil {
		return nil, ref, err
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var f protocol.ServerFrame
	if err := conn.ReadJSON(&f); err != nil || f.Op != protocol.OpWelcome {
		conn.Close()
		return nil, nil, fmt.Errorf("no welcome: %+v, %v", f, err)
	}
	conn.SetReadDeadline(time.Time{})
	if quiet {
		conn.SetPingHandler(func(string) error { return nil })
	}
	r := &rawConn{Conn: conn, counts: map[string]int{}, last: map[string]int64{}, done: make(chan struct{}), heard: make(chan struct{}, 1)}
	go r.read()
	t.Cleanup(r.close)
	return r, nil, nil
}

// upgradeWith upgrades to wsURL from src with tok as the bearer token. A
// refused upgrade returns its refusal.
func upgradeWith(wsURL string, src net.IP, tok string) (*websocket.Conn, *handshakeRefusal, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: dialerFrom(src).DialContext}
	conn, resp, err := d.Dial(wsURL, http.Header{"Authorization": {"Bearer " + tok}})
	if err == nil || resp == nil {
		return conn, nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	var b struct {
		Quota string `json:"quota"`
	}
	_ = json.Unmarshal(body, &b)
	return nil, &handshakeRefusal{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), quota: b.Quota}, nil
}

// dialerFrom dials from src (nil: the kernel's choice), for 10 s at most.
func dialerFrom(src net.IP) *net.Dialer {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if src != nil {
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	return nd
}

func (r *rawConn) read() {
	defer close(r.done)
	for {
		_, data, err := r.ReadMessage()
		if err != nil {
			code := 1006
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			r.mu.Lock()
			r.code, r.closedAt = code, time.Now()
			r.mu.Unlock()
			return
		}
		var f protocol.ServerFrame
		if json.Unmarshal(data, &f) != nil {
			f.Op = "unparsable"
		}
		r.mu.Lock()
		r.counts[frameKey(f)]++
		switch {
		case f.Op == protocol.OpMessage:
			if last, ok := r.last[f.Room]; ok && f.Seq != last+1 {
				r.disorder++
			}
			r.last[f.Room] = f.Seq
		case f.Code == protocol.CodeRateLimited && f.Quota != "":
			r.retry = append(r.retry, f.RetryAfterMS)
		}
		if f.Code == protocol.CodeRateLimited && f.Ref == "" {
			r.refless++
		}
		r.mu.Unlock()
		select {
		case r.heard <- struct{}{}:
		default:
		}
	}
}

// await waits, frame by frame, until cond (called with r.mu held) holds,
// the connection ends or timeout passes; it reports whether cond held.
func (r *rawConn) await(cond func() bool, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-r.heard:
		case <-r.done:
			r.mu.Lock()
			defer r.mu.Unlock()
			return cond()
		case <-deadline:
			return false
		}
	}
}

// count sums the frames counted under keys.
func (r *rawConn) count(keys ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range keys {
		n += r.counts[k]
	}
	return n
}

// closed is the close code, or 0 while the connection is open.
func (r *rawConn) closed() int {
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.code
	default:
		return 0
	}
}

func (r *rawConn) close() {
	r.Conn.Close()
	<-r.done
}

// write sends one text frame (a failed write shows as the reader's end).
func (r *rawConn) write(frame string) { _ = r.WriteMessage(websocket.TextMessage, []byte(frame)) }

// tally sums what a set of connections counted.
type tally struct {
	counts           map[string]int
	refless          int
	retry, badRetry  int // quota refusals with a retry_after_ms, and with none or one past limit
	disorder, closed int
}

func sum(conns []*rawConn, retryMax time.Duration) tally {
	t := tally{counts: map[string]int{}}
	for _, c := range conns {
		c.mu.Lock()
		for k, n := range c.counts {
			t.counts[k] += n
		}
		t.refless += c.refless
		for _, ms := range c.retry {
			if ms > 0 && time.Duration(ms)*time.Millisecond <= retryMax {
				t.retry++
			} else {
				t.badRetry++
			}
		}
		t.disorder += c.disorder
		c.mu.Unlock()
		if c.closed() != 0 {
			t.closed++
		}
	}
	return t
}

// openAll opens n connections for user (users(i) if set) aimed by aim from
// sources first.., failing the test on any refusal.
func (s *suite) openAll(t *testing.T, n, first int, user func(int) string) []*rawConn {
	t.Helper()
	ins := s.instances(t)
	conns := make([]*rawConn, n)
	for i := range conns {
		u, src := s.aim(ins, first+i)
		c, ref, err := s.openRaw(t, u, src, user(i), false)
		if err != nil || ref != nil {
			t.Fatalf("attacker connection %d of %s: %v %v", i, user(i), err, ref)
		}
		conns[i] = c
	}
	return conns
}

// joinAll joins every connection to room and waits for the joined frames.
func joinAll(t *testing.T, conns []*rawConn, room string) {
	t.Helper()
	for _, c := range conns {
		c.write(`{"op":"join","room":"` + room + `"}`)
	}
	if err := within(t, "attackers joined", 10*time.Second, func() error {
		for i, c := range conns {
			if c.count(protocol.OpJoined) < 1 {
				return errorf("connection %d: no joined frame; frames %v", i, c.counts)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// --- a. Poison values -------------------------------------------------------

// Values a store or a parser may choke on: NUL in text and id, a token whose
// sub holds NUL, a frame past MAX_MESSAGE_BYTES, invalid UTF-8, deep JSON
// nesting. Each is refused (bad_request, 401, close 1009 or 1007), none is
// stored, and the honest messages go on being stored all along (once, a
// message Postgres refused held back every room's persistence).
func abusePoison(t *testing.T, s *suite) {
	cfg := s.settings(t)
	s.underAttack(t, "poison values", 3000, nil, func(t *testing.T, h *honest) string {
		room := chattest.Room()
		user := "poisoner-" + runTag
		ins := s.instances(t)
		depth := (cfg.MaxMessageBytes - 100) / 2
		big := `{"op":"send","room":"` + room + `","text":"` + strings.Repeat("x", 2<<20) + `","id":"big"}`
		cases := []struct {
			name  string
			frame string
			want  []string // error codes or close codes that refuse it
		}{
			{"NUL in text", `{"op":"send","room":"` + room + `","text":"a\u0000b","id":"nul-text"}`, []string{protocol.CodeBadRequest}},
			{"NUL in id", `{"op":"send","room":"` + room + `","text":"nul id","id":"nul\u0000id"}`, []string{protocol.CodeBadRequest}},
			{"invalid UTF-8", `{"op":"send","room":"` + room + "\",\"text\":\"\xff\xfe x \xc3\",\"id\":\"bad-utf8\"}", []string{protocol.CodeBadRequest, "close 1007"}},
			{"JSON nested " + strconv.Itoa(depth) + " deep", `{"op":"send","room":"` + room + `","id":"deep","text":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`, []string{protocol.CodeBadRequest}},
			{"2 MB frame", big, []string{"close 1009"}},
		}
		outcomes := map[string]map[string]int{} // case → outcome → count
		var conn *rawConn
		// try writes one poison on a connection of the poisoner's, joined
		// to room, and returns what came of it: an error code, "acked",
		// "close <code>" or "no answer".
		try := func(frame string) string {
			if conn == nil || conn.closed() != 0 {
				u, src := s.aim(ins, 9000)
				c, ref, err := s.openRaw(t, u, src, user, false)
				if err != nil || ref != nil {
					t.Fatalf("poisoner: %v %v", err, ref)
				}
				joinAll(t, []*rawConn{c}, room)
				conn = c
			}
			c := conn
			refusals, acks := c.count(protocol.CodeBadRequest), c.count(protocol.OpAck)
			wrote := make(chan struct{})
			go func() { defer close(wrote); c.write(frame) }() // a 2 MB write may block while the server closes
			outcome := "no answer"
			_ = within(t, "poison answered", 15*time.Second, func() error {
				switch code := c.closed(); {
				case code != 0:
					outcome = fmt.Sprintf("close %d", code)
				case c.count(protocol.OpAck) > acks:
					outcome = "acked"
				case c.count(protocol.CodeBadRequest) > refusals:
					outcome = protocol.CodeBadRequest
				default:
					return errorf("no answer yet")
				}
				return nil
			})
			if outcome == "no answer" {
				c.Conn.Close() // no write may go on beside the next one
			}
			<-wrote
			return outcome
		}
		nulSub, mintErr := s.Token("mal\x00lory", time.Hour)
		sent, refused := 0, 0
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(12 * time.Second); time.Now().Before(end); <-tick.C {
			for _, c := range cases {
				if outcomes[c.name] == nil {
					outcomes[c.name] = map[string]int{}
				}
				o := try(c.frame)
				outcomes[c.name][o]++
				sent++
				if slices.Contains(c.want, o) {
					refused++
				}
			}
			if mintErr == nil {
				sent++
				u, src := s.aim(ins, 9001)
				o := "upgraded"
				conn, ref, err := upgradeWith(u, src, nulSub)
				switch {
				case err != nil:
					o = "error"
				case ref != nil:
					o = strconv.Itoa(ref.status)
				default:
					conn.Close() // only a refusal matters
				}
				if outcomes["sub with NUL"] == nil {
					outcomes["sub with NUL"] = map[string]int{}
				}
				outcomes["sub with NUL"][o]++
				if o == "401" {
					refused++
				}
			}
		}
		for _, c := range cases {
			for o, n := range outcomes[c.name] {
				if !slices.Contains(c.want, o) {
					t.Errorf("%s: %d times %q, want one of %v", c.name, n, o, c.want)
				}
			}
		}
		if mintErr != nil {
			t.Logf("a token whose sub holds NUL: the target does not mint it (%v); not tried", mintErr)
		} else if n := outcomes["sub with NUL"]; len(n) != 1 || n["401"] == 0 {
			t.Errorf("a token whose sub holds NUL: %v, want 401 every time", n)
		}
		h.later(func(t *testing.T) {
			if ids, err := s.storedIDs(room); err != nil || len(ids) > 0 {
				t.Errorf("the poisoned room %s holds %d messages (%v), want none: %v", room, len(ids), ids, err)
			}
		})
		return fmt.Sprintf("%d poisons sent, %d refused as documented: %v", sent, refused, outcomes)
	})
}

// --- b. Send flood ----------------------------------------------------------

// One user floods an honest room over 10 connections, each under RATE_LIMIT,
// together past QUOTA_USER_SENDS: its sends are refused with rate_limited,
// quota user_sends, a retry_after_ms and the send's id as ref.
func abuseSendFlood(t *testing.T, s *suite) {
	cfg := s.settings(t)
	q := quotaRate(t, cfg, protocol.QuotaUserSends)
	s.underAttack(t, "send flood", 3300, []string{protocol.QuotaUserSends}, func(t *testing.T, h *honest) string {
		const conns = 10
		user := "flooder-" + runTag
		room := h.rooms[0]
		rate := 0.9 * cfg.RateLimit // per connection, under RATE_LIMIT
		cs := s.openAll(t, conns, 9100, func(int) string { return user })
		joinAll(t, cs, room)
		limited := func() int { return sum(cs, q.Per).counts[protocol.CodeRateLimited+"/"+protocol.QuotaUserSends] }
		stop := make(chan struct{})
		var sent atomic.Int64
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
				defer tick.Stop()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					c.write(fmt.Sprintf(`{"op":"send","room":"%s","text":"flood","id":"f%d-%d"}`, room, i, n))
					sent.Add(1)
				}
			}()
		}
		// Until the quota has refused a few sends on every connection, for
		// up to the time two windows' worth takes.
		toQuota := time.Duration(float64(q.Count) / (rate * conns) * float64(time.Second))
		began := time.Now()
		err := within(t, "the flood is refused", 2*toQuota+20*time.Second, func() error {
			if n := limited(); n < 5*conns {
				return errorf("%d sends refused with quota user_sends", n)
			}
			return nil
		})
		refusedAfter := time.Since(began)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Error(err)
		}
		answered := func() int {
			tl := sum(cs, q.Per)
			return tl.counts[protocol.OpAck] + tl.counts[protocol.CodeRateLimited] + tl.counts[protocol.CodeRateLimited+"/"+protocol.QuotaUserSends] +
				tl.counts[protocol.CodeOverloaded] + tl.counts[protocol.CodeInternal]
		}
		if err := within(t, "every flood send answered", 15*time.Second, func() error {
			if n := answered(); n < int(sent.Load()) {
				return errorf("%d of %d sends answered", n, sent.Load())
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		tl := sum(cs, q.Per)
		acked := tl.counts[protocol.OpAck]
		byQuota := tl.counts[protocol.CodeRateLimited+"/"+protocol.QuotaUserSends]
		if byQuota == 0 {
			t.Errorf("%d sends by one user in %s over %d connections: none refused with quota %s", sent.Load(), refusedAfter.Round(time.Second), conns, protocol.QuotaUserSends)
		}
		if most := admits(q, began, time.Now()); acked > most {
			t.Errorf("%d flood sends acked, want at most %d (QUOTA_USER_SENDS %s)", acked, most, q)
		}
		if tl.badRetry > 0 || tl.refless > 0 {
			t.Errorf("quota refusals: %d without a retry_after_ms in (0, %s], %d without the send's id as ref", tl.badRetry, q.Per, tl.refless)
		}
		return fmt.Sprintf("user_sends %s: %d sends over %d connections at %.0f/s each, %d acked, %d refused with quota user_sends (%d of them within %s), %d by RATE_LIMIT, other %v",
			q, sent.Load(), conns, rate, acked, byQuota, 5*conns, refusedAfter.Round(100*time.Millisecond), tl.counts[protocol.CodeRateLimited], others(tl.counts))
	})
}

// others are the error frames counted that are neither acks, joins,
// messages nor rate_limited.
func others(counts map[string]int) map[string]int {
	o := map[string]int{}
	for k, n := range counts {
		switch {
		case k == protocol.OpAck, k == protocol.OpJoined, k == protocol.OpMessage, strings.HasPrefix(k, protocol.CodeRateLimited):
		default:
			o[k] = n
		}
	}
	return o
}

// --- c. Join flood and room spray -----------------------------------------

// One user joins thousands of new rooms (QUOTA_USER_ROOMS), or one room
// over and over (QUOTA_USER_JOINS), over 5 connections, each join followed
// by a leave: past the quota its joins are refused with rate_limited.
func abuseJoinFlood(t *testing.T, s *suite) {
	cfg := s.settings(t)
	for i, row := range []struct {
		name     string
		quota    string
		newRooms bool
	}{
		{"RoomSpray", protocol.QuotaUserRooms, true},
		{"SameRoom", protocol.QuotaUserJoins, false},
	} {
		t.Run(row.name, func(t *testing.T) {
			rate := quotaRate(t, cfg, row.quota)
			s.underAttack(t, "join flood, "+row.name, 3600+300*i, []string{row.quota}, func(t *testing.T, h *honest) string {
				const conns = 5
				user := fmt.Sprintf("joiner-%s-%s", row.name, runTag)
				n := min(max(2000, beyond(rate)), 5000)
				room := func(k int) string { return fmt.Sprintf("spray-%s-%d", runTag, k) }
				if !row.newRooms {
					// A room that holds a message: joining it creates nothing.
					c := s.dial(t, user, 9200)
					r := chattest.Room()
					chattest.Join(t, c, r)
					chattest.Send(t, c, r, "a room to join again and again")
					c.Close()
					room = func(int) string { return r }
				}
				cs := s.openAll(t, conns, 9210, func(int) string { return user })
				began := time.Now()
				for i, c := range cs {
					go func() {
						tick := time.NewTicker(attackSpan * conns / time.Duration(n))
						defer tick.Stop()
						for k := i; k < n; k += conns {
							c.write(`{"op":"join","room":"` + room(k) + `"}`)
							c.write(`{"op":"leave","room":"` + room(k) + `"}`)
							<-tick.C
						}
					}()
				}
				joinAnswers := func(tl tally) int {
					a := 0
					for k, v := range tl.counts {
						if k != protocol.OpMessage && k != protocol.CodeNotJoined {
							a += v // joined, or a join's refusal
						}
					}
					return a
				}
				if err := within(t, "every join answered", 2*time.Minute, func() error {
					if a := joinAnswers(sum(cs, rate.Per)); a < n {
						return errorf("%d of %d joins answered", a, n)
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
				took := time.Since(began)
				tl := sum(cs, rate.Per)
				joined := tl.counts[protocol.OpJoined]
				if tl.counts[protocol.CodeRateLimited+"/"+row.quota] == 0 {
					t.Errorf("%d joins: none refused with quota %s", n, row.quota)
				}
				if most := admits(rate, began, time.Now()); joined > most {
					t.Errorf("%d of %d joins admitted, want at most %d (%s %s)", joined, n, most, row.quota, rate)
				}
				if tl.badRetry > 0 {
					t.Errorf("%d quota refusals without a retry_after_ms in (0, %s]", tl.badRetry, rate.Per)
				}
				keys := ""
				if l, ok := s.Target.(*target.Local); ok && row.newRooms {
					// A room holds at most 8 keys (app/broker), and the spray
					// may create no more rooms than were admitted.
					n := redisKeys(t, l, "*spray-"+runTag+"-*")
					if n > 8*joined {
						t.Errorf("%d Redis keys name a sprayed room, %d rooms admitted", n, joined)
					}
					keys = fmt.Sprintf("; Redis keys naming a sprayed room: %d", n)
				}
				return fmt.Sprintf("%s %s: %d joins in %s, %d admitted, refused %v, other %v%s",
					row.quota, rate, n, took.Round(100*time.Millisecond), joined, rateLimited(tl.counts), others(tl.counts), keys)
			})
		})
	}
}

// rateLimited picks the rate_limited counts out of counts.
func rateLimited(counts map[string]int) map[string]int {
	o := map[string]int{}
	for k, n := range counts {
		if strings.HasPrefix(k, protocol.CodeRateLimited) {
			o[k] = n
		}
	}
	return o
}

// redisKeys counts the keys matching pattern in the local target's Redis:
// on a Redis Cluster, on each of its primaries.
func redisKeys(t *testing.T, l *target.Local, pattern string) int {
	url := l.RedisURL()
	nodes, ok := strings.CutPrefix(url, "redis+cluster://")
	if !ok {
		return scanKeys(t, pattern, "-u", url)
	}
	n := 0
	for _, node := range strings.Split(nodes, ",") {
		host, port, err := net.SplitHostPort(node)
		if err != nil {
			t.Fatalf("a node of %s: %v", url, err)
		}
		role, err := exec.Command("redis-cli", "-h", host, "-p", port, "role").Output()
		if err != nil {
			t.Fatalf("redis-cli role on %s: %v", node, err)
		}
		if strings.HasPrefix(string(role), "master") {
			n += scanKeys(t, pattern, "-h", host, "-p", port)
		}
	}
	return n
}

// scanKeys counts the keys matching pattern on the Redis that args name.
func scanKeys(t *testing.T, pattern string, args ...string) int {
	out, err := exec.Command("redis-cli", append(args, "--scan", "--pattern", pattern)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v --scan: %v: %s", args, err, out)
	}
	return len(strings.Fields(string(out)))
}

// --- d. Resume storm --------------------------------------------------------

// fill has 10 users of its own send perRoom messages to each of rooms,
// each under RATE_LIMIT and every quota, and returns once all are acked.
func (s *suite) fill(t *testing.T, cfg config.Config, prefix string, first int, rooms []string, perRoom int) {
	t.Helper()
	const fillers = 10
	every := time.Duration(float64(time.Second) / (0.8 * cfg.RateLimit))
	errs := make(chan error, fillers)
	var wg sync.WaitGroup
	for f := range fillers {
		mine, count := rooms, (perRoom+fillers-1)/fillers
		if len(rooms) >= fillers {
			mine, count = rooms[f*len(rooms)/fillers:(f+1)*len(rooms)/fillers], perRoom
		}
		c := s.dial(t, fmt.Sprintf("%s-%s-%d", prefix, runTag, f), first+f)
		for _, r := range mine {
			chattest.Join(t, c, r)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for _, r := range mine {
				for range count {
					<-tick.C
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					_, err := c.Send(ctx, r, "filler")
					cancel()
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("fill: %v", err)
	}
}

// One room is filled past HISTORY_SIZE; one user resumes it from seq 1 over
// and over on 5 connections (each resume read from Postgres): past
// QUOTA_USER_RESUMES the resumes are refused with rate_limited. And one
// connection joining 100 rooms with since=1 at once gets every catch-up
// (or a refusal), in order.
func abuseResumeStorm(t *testing.T, s *suite) {
	cfg := s.settings(t)
	q := quotaRate(t, cfg, protocol.QuotaUserResumes)
	if cfg.HistorySize > 20_000 {
		t.Skipf("HISTORY_SIZE %d: too many messages to fill a room past it here", cfg.HistorySize)
	}
	deep := chattest.Room()
	depth := cfg.HistorySize + 100
	s.fill(t, cfg, "filler-deep", 9300, []string{deep}, depth)
	const rooms = 100
	many := make([]string, rooms)
	for i := range many {
		many[i] = chattest.Room()
	}
	const perRoom = 10
	s.fill(t, cfg, "filler-many", 9320, many, perRoom)
	until(t, "the deep room stored", time.Minute, func() error {
		ids, err := s.storedIDs(deep)
		if err != nil {
			return err
		}
		if len(ids) < depth {
			return errorf("%d of %d stored", len(ids), depth)
		}
		return nil
	})
	s.underAttack(t, "resume storm", 3000, []string{protocol.QuotaUserResumes}, func(t *testing.T, h *honest) string {
		const conns = 5
		user := "resumer-" + runTag
		n := beyond(q) // resumes in all
		cs := s.openAll(t, conns, 9340, func(int) string { return user })
		// Each connection resumes, reads the whole catch-up (or takes the
		// refusal), and resumes again: a second join re-syncs.
		refusals := func(counts map[string]int) int {
			r := 0
			for k, v := range counts {
				if k != protocol.OpJoined && k != protocol.OpMessage {
					r += v
				}
			}
			return r
		}
		// Meanwhile one connection joins 100 rooms with since=1 at once.
		u, src := s.aim(s.instances(t), 9360)
		hoarder, ref, err := s.openRaw(t, u, src, "hoarder-"+runTag, false)
		if err != nil || ref != nil {
			t.Fatalf("hoarder: %v %v", err, ref)
		}
		hoarder.mu.Lock()
		for _, r := range many {
			hoarder.last[r] = 1
		}
		hoarder.mu.Unlock()
		var next, stuck atomic.Int64
		var wg sync.WaitGroup
		began := time.Now()
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					c.mu.Lock()
					joined, refused := c.counts[protocol.OpJoined], refusals(c.counts)
					c.last[deep] = 1
					c.mu.Unlock()
					c.write(`{"op":"join","room":"` + deep + `","since":1}`)
					if !c.await(func() bool {
						return refusals(c.counts) > refused || c.counts[protocol.OpJoined] > joined && c.last[deep] >= int64(depth)
					}, time.Minute) {
						stuck.Add(1)
						return
					}
				}
			}()
		}
		for _, r := range many {
			hoarder.write(`{"op":"join","room":"` + r + `","since":1}`)
		}
		wg.Wait()
		if n := stuck.Load(); n > 0 {
			t.Errorf("%d connections got neither a whole catch-up nor a refusal within a minute of a resume", n)
		}
		storm := time.Since(began)
		tl := sum(cs, q.Per)
		resumed := tl.counts[protocol.OpJoined]
		if tl.counts[protocol.CodeRateLimited+"/"+protocol.QuotaUserResumes] == 0 {
			t.Errorf("%d resumes from seq 1 of a room of %d messages: none refused with quota %s", n, depth, protocol.QuotaUserResumes)
		}
		if most := admits(q, began, time.Now()); resumed > most {
			t.Errorf("%d of %d resumes admitted, want at most %d (QUOTA_USER_RESUMES %s)", resumed, n, most, q)
		}
		if tl.badRetry > 0 {
			t.Errorf("%d quota refusals without a retry_after_ms in (0, %s]", tl.badRetry, q.Per)
		}
		if tl.disorder > 0 {
			t.Errorf("the resumes' catch-ups: %d messages out of order or after a gap", tl.disorder)
		}

		// The hoarder's catch-ups.
		c := hoarder
		complete := func() (done, refused int) {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, r := range many {
				if c.last[r] == perRoom {
					done++
				}
			}
			for k, v := range c.counts {
				if strings.HasPrefix(k, protocol.CodeRateLimited) || k == protocol.CodeInternal {
					refused += v
				}
			}
			return done, refused
		}
		if err := within(t, "every catch-up of the 100 rooms", time.Minute, func() error {
			if done, refused := complete(); done+refused < rooms {
				return errorf("%d of %d rooms caught up, %d refused", done, rooms, refused)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		caughtUp := time.Since(began) // from the storm's start
		done, refused := complete()
		if d := sum([]*rawConn{c}, q.Per).disorder; d > 0 {
			t.Errorf("the 100 catch-ups: %d messages out of order or after a gap", d)
		}
		return fmt.Sprintf("user_resumes %s: %d resumes of %d messages each over %d connections in %s, %d admitted, refused %v, other %v, %d message frames read; one connection joining %d rooms since=1 meanwhile: %d caught up, %d refused, %s after the storm began",
			q, n, depth-1, conns, storm.Round(100*time.Millisecond), resumed, rateLimited(tl.counts), others(tl.counts), tl.counts[protocol.OpMessage],
			rooms, done, refused, caughtUp.Round(time.Millisecond))
	})
}

// --- e. History API flood ---------------------------------------------------

// One user reads the history API past QUOTA_USER_HISTORY, from 8 sources:
// 429 with Retry-After and quota user_history.
func abuseHistoryFlood(t *testing.T, s *suite) {
	cfg := s.settings(t)
	q := quotaRate(t, cfg, protocol.QuotaUserHistory)
	s.underAttack(t, "history flood", 3000, []string{protocol.QuotaUserHistory}, func(t *testing.T, h *honest) string {
		const workers = 8
		tok := s.token(t, "historian-"+runTag, time.Hour)
		n := beyond(q)
		var next atomic.Int64
		var mu sync.Mutex
		statuses := map[string]int{}
		badRefusals := 0
		var wg sync.WaitGroup
		began := time.Now()
		for w := range workers {
			hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialerFrom(s.source(9400 + w)).DialContext}}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer hc.CloseIdleConnections()
				tick := time.NewTicker(attackSpan * workers / time.Duration(n))
				defer tick.Stop()
				for ; next.Add(1) <= int64(n); <-tick.C {
					status, hdr, body, err := historyGet(hc, s.Endpoint(), h.rooms[0], tok, 0, 50)
					mu.Lock()
					switch {
					case err != nil:
						statuses["error"]++
					case status == http.StatusTooManyRequests:
						statuses["429"]++
						var b struct {
							Quota string `json:"quota"`
						}
						_ = json.Unmarshal(body, &b)
						if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || b.Quota != protocol.QuotaUserHistory {
							badRefusals++
						}
					default:
						statuses[strconv.Itoa(status)]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		took := time.Since(began)
		if statuses["429"] == 0 {
			t.Errorf("%d history reads by one user: none refused with 429", n)
		}
		if badRefusals > 0 {
			t.Errorf("%d of the 429s without Retry-After or quota %q in the body", badRefusals, protocol.QuotaUserHistory)
		}
		if ok, most := statuses["200"], admits(q, began, time.Now()); ok > most {
			t.Errorf("%d of %d history reads answered, want at most %d (QUOTA_USER_HISTORY %s)", ok, n, most, q)
		}
		if len(statuses) > 2 || (len(statuses) == 2 && (statuses["200"] == 0 || statuses["429"] == 0)) {
			t.Errorf("history reads: %v, want only 200 and 429", statuses)
		}
		return fmt.Sprintf("user_history %s: %d reads from %d sources in %s: %v", q, n, workers, took.Round(100*time.Millisecond), statuses)
	})
}

// --- f. Connection floods ---------------------------------------------------

// One user opens connections past MAX_CONNECTIONS_PER_USER; one address
// opens them past MAX_CONNECTIONS_PER_ADDRESS; one address reconnects past
// QUOTA_ADDRESS_CONNECTS. Each is refused before the upgrade with 429,
// Retry-After and its quota, while other users and addresses connect and
// chat.
func abuseConnectionFlood(t *testing.T, s *suite) {
	cfg := s.settings(t)
	rows := []struct {
		name     string
		quota    string
		limit    int
		sources  bool // needs distinct client addresses through the balancer
		attack   func(t *testing.T, h *honest) string
		firstSrc int
	}{
		{"PerUser", protocol.QuotaUserConnections, cfg.MaxConnectionsPerUser, false, func(t *testing.T, h *honest) string {
			return s.userConnections(t, cfg.MaxConnectionsPerUser)
		}, 4000},
		{"PerAddress", protocol.QuotaAddressConnections, cfg.MaxConnectionsPerAddress, true, func(t *testing.T, h *honest) string {
			return s.addressConnections(t, cfg.MaxConnectionsPerAddress)
		}, 4300},
		{"ReconnectStorm", protocol.QuotaAddressConnects, cfg.Quotas.AddressConnects.Count, true, func(t *testing.T, h *honest) string {
			return s.reconnectStorm(t, cfg.Quotas.AddressConnects)
		}, 4600},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if row.limit == 0 {
				t.Skipf("quota %s is off on this target", row.quota)
			}
			if row.sources && !s.loopback {
				t.Skip("the balancer sees one client address for every client here: an attack from one address would refuse the honest users too")
			}
			if row.sources && len(cfg.TrustedProxies) == 0 {
				t.Fatal("TRUSTED_PROXIES is not set: the instances take the balancer's address for every client's, so per-address limits cannot be tested (nor hold)")
			}
			s.underAttack(t, "connection flood, "+row.name, row.firstSrc, []string{row.quota}, row.attack)
		})
	}
}

// dialed sorts the outcomes of upgrade attempts.
type dialed struct {
	mu       sync.Mutex
	open     []*rawConn
	refused  map[string]int // "status quota"
	badRetry int            // 429s without a Retry-After of at least 1 s
	errs     map[string]int
}

func (d *dialed) add(c *rawConn, ref *handshakeRefusal, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case c != nil:
		d.open = append(d.open, c)
	case ref != nil:
		if d.refused == nil {
			d.refused = map[string]int{}
		}
		d.refused[fmt.Sprintf("%d %s", ref.status, ref.quota)]++
		if ra, err := strconv.Atoi(ref.retryAfter); ref.status == http.StatusTooManyRequests && (err != nil || ra < 1) {
			d.badRetry++
		}
	default:
		if d.errs == nil {
			d.errs = map[string]int{}
		}
		d.errs[err.Error()]++
	}
}

func (d *dialed) closeAll() {
	d.mu.Lock()
	open := d.open
	d.open = nil
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Add(1)
		go func() { defer wg.Done(); c.close() }()
	}
	wg.Wait()
}

func (d *dialed) check(t *testing.T, quota string, limit, attempts int) {
	t.Helper()
	if n := d.refused["429 "+quota]; n == 0 {
		t.Errorf("%d attempts: none refused with 429 and quota %s (refusals %v)", attempts, quota, d.refused)
	}
	if d.badRetry > 0 {
		t.Errorf("%d 429s without a Retry-After", d.badRetry)
	}
	if len(d.errs) > 0 {
		t.Errorf("upgrade attempts that failed otherwise: %v", d.errs)
	}
	if len(d.open) > limit {
		t.Errorf("%d connections open, want at most %d", len(d.open), limit)
	}
}

// userConnections: one user, limit+20 connections spread over the instances.
func (s *suite) userConnections(t *testing.T, limit int) string {
	user := "hydra-" + runTag
	attempts := limit + 20
	ins := s.instances(t)
	d := &dialed{}
	defer d.closeAll()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= attempts; i = int(next.Add(1)) {
				u, src := s.aim(ins, 9500+i)
				d.add(s.openRaw(t, u, src, user, false))
			}
		}()
	}
	wg.Wait()
	d.check(t, protocol.QuotaUserConnections, limit, attempts)
	if err := s.newcomer("newcomer-user-"+runTag, 9490); err != nil {
		t.Errorf("another user while %s holds %d connections: %v", user, len(d.open), err)
	}
	open := len(d.open)
	d.closeAll()
	// Once they are closed the user connects again.
	var again time.Duration
	began := time.Now()
	if err := within(t, "the user connects again", 15*time.Second, func() error {
		u, src := s.aim(ins, 9499)
		c, ref, err := s.openRaw(t, u, src, user, false)
		if c != nil {
			c.close()
			return nil
		}
		return fmt.Errorf("%v %v", ref, err)
	}); err != nil {
		t.Errorf("%s after closing its connections: %v", user, err)
	}
	again = time.Since(began)
	return fmt.Sprintf("MAX_CONNECTIONS_PER_USER %d: %d attempts by one user, %d open, refused %v, errors %v; connects again %s after closing them",
		limit, attempts, open, d.refused, d.errs, again.Round(time.Millisecond))
}

// addressConnections: limit+20 connections of distinct users from one
// address. A refusal by QUOTA_ADDRESS_CONNECTS is waited out as its
// Retry-After says (the connects quota is below the open-connections limit
// by default).
func (s *suite) addressConnections(t *testing.T, limit int) string {
	src := s.source(9700)
	attempts := limit + 20
	d := &dialed{}
	defer d.closeAll()
	var stop atomic.Bool
	waits := map[string]int{}
	var mu sync.Mutex
	began := time.Now()
	onWorkers(attempts, func(i int) bool {
		for !stop.Load() {
			c, ref, err := s.openRaw(t, s.wsURL, src, fmt.Sprintf("swarm-%s-%d", runTag, i), false)
			if ref != nil && ref.quota == protocol.QuotaAddressConnects {
				ra, _ := strconv.Atoi(ref.retryAfter)
				mu.Lock()
				waits[ref.retryAfter]++
				mu.Unlock()
				if ra < 1 || ra > 120 || time.Since(began) > 4*time.Minute {
					d.add(c, ref, err)
					return false
				}
				time.Sleep(time.Duration(ra) * time.Second) // as the server asks
				continue                                    // the same attempt again
			}
			d.add(c, ref, err)
			if ref != nil && ref.quota == protocol.QuotaAddressConnections {
				stop.Store(true)
			}
			return true
		}
		return false
	})
	took := time.Since(began)
	d.check(t, protocol.QuotaAddressConnections, limit, attempts)
	if err := s.newcomer("newcomer-address-"+runTag, 9701); err != nil {
		t.Errorf("a user from another address while %v holds %d connections: %v", src, len(d.open), err)
	}
	return fmt.Sprintf("MAX_CONNECTIONS_PER_ADDRESS %d: %d open from %v in %s (address_connects waits by Retry-After %v), refused %v, errors %v",
		limit, len(d.open), src, took.Round(100*time.Millisecond), waits, d.refused, d.errs)
}

// onWorkers runs attempt(1) to attempt(n) on 20 goroutines, each taking
// the next number, and returns how many were begun; a worker stops early
// when its attempt returns false.
func onWorkers(n int, attempt func(i int) bool) int {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n && attempt(i); i = int(next.Add(1)) {
			}
		})
	}
	wg.Wait()
	return min(int(next.Load()), n)
}

// reconnectStorm: one address connects and hangs up, as fast as 20
// workers go, past QUOTA_ADDRESS_CONNECTS.
func (s *suite) reconnectStorm(t *testing.T, q config.Rate) string {
	src := s.source(9800)
	attempts := beyond(q)
	d := &dialed{}
	var admitted atomic.Int64
	began := time.Now()
	tried := onWorkers(attempts, func(i int) bool {
		c, ref, err := s.openRaw(t, s.wsURL, src, fmt.Sprintf("storm-%s-%d", runTag, i), false)
		if c != nil {
			admitted.Add(1)
			c.close()
		} else {
			d.add(nil, ref, err)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.refused["429 "+protocol.QuotaAddressConnects] < 100
	})
	took := time.Since(began)
	d.check(t, protocol.QuotaAddressConnects, 0, attempts)
	if n, most := int(admitted.Load()), admits(q, began, time.Now()); n > most {
		t.Errorf("%d connects from one address admitted, want at most %d (QUOTA_ADDRESS_CONNECTS %s)", n, most, q)
	}
	if err := s.newcomer("newcomer-storm-"+runTag, 9801); err != nil {
		t.Errorf("a user from another address during the storm: %v", err)
	}
	return fmt.Sprintf("address_connects %s: %d connects from %v in %s, %d admitted, refused %v, errors %v",
		q, tried, src, took.Round(100*time.Millisecond), admitted.Load(), d.refused, d.errs)
}

// --- g. Slowloris -----------------------------------------------------------

// 200 connections send part of an HTTP request and stall; 50 upgraded
// connections trickle a frame a byte at a time: those are closed within
// FRAME_TIMEOUT (and some slack), and nobody else notices.
func abuseSlowloris(t *testing.T, s *suite) {
	cfg := s.settings(t)
	const slackClose = 5 * time.Second
	s.underAttack(t, "slowloris", 3000, nil, func(t *testing.T, h *honest) string {
		u, err := url.Parse(s.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		stalled := 0
		for i := range 200 {
			c, err := dialerFrom(s.source(9900+i%10)).Dial("tcp", u.Host)
			if err != nil {
				t.Errorf("slowloris connection %d: %v", i, err)
				break
			}
			t.Cleanup(func() { c.Close() })
			if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: "+u.Host+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"); err == nil {
				stalled++
			}
		}

		// The trickled frame takes twice FRAME_TIMEOUT to arrive whole.
		const every = 200 * time.Millisecond
		payload := []byte(fmt.Sprintf(`{"op":"join","room":"%s"}`, chattest.Room()))
		if n := int(2*cfg.FrameTimeout/every) + 10; n > len(payload) {
			payload = append(payload, []byte(strings.Repeat(" ", n-len(payload)))...)
		}
		frame := maskedText(payload)
		const tricklers = 50
		cs := make([]*rawConn, tricklers)
		ins := s.instances(t)
		for i := range cs {
			u, src := s.aim(ins, 9920+i)
			c, ref, err := s.openRaw(t, u, src, fmt.Sprintf("trickler-%s-%d", runTag, i), true)
			if err != nil || ref != nil {
				t.Fatalf("trickler %d: %v %v", i, err, ref)
			}
			cs[i] = c
		}
		began := time.Now()
		for _, c := range cs {
			go func() {
				tick := time.NewTicker(every)
				defer tick.Stop()
				for _, b := range frame {
					if _, err := c.UnderlyingConn().Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-c.done:
						return
					case <-tick.C:
					}
				}
			}()
		}
		bound := cfg.FrameTimeout + slackClose
		err = within(t, "the trickled frames are cut off", bound, func() error {
			if n := sum(cs, 0).closed; n < tricklers {
				return errorf("%d of %d trickling connections closed", n, tricklers)
			}
			return nil
		})
		var after []time.Duration
		codes := map[int]int{}
		for _, c := range cs {
			if code := c.closed(); code != 0 {
				codes[code]++
				after = append(after, c.closedAt.Sub(began))
			}
		}
		if err != nil {
			t.Errorf("FRAME_TIMEOUT %s: %d of %d connections trickling a frame of %d bytes, a byte every %s, closed within %s",
				cfg.FrameTimeout, len(after), tricklers, len(frame), every, bound)
		}
		return fmt.Sprintf("FRAME_TIMEOUT %s: %d partial HTTP requests stalled; %d of %d connections trickling a %d-byte frame closed (codes %v) after %s",
			cfg.FrameTimeout, stalled, len(after), tricklers, len(frame), codes, percentiles(after))
	})
}

// maskedText is a client's text frame carrying payload, masked as RFC 6455
// requires of clients.
func maskedText(payload []byte) []byte {
	f := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	default:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}
