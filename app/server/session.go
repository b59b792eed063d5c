package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/hub"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/netpoll"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/wsconn"
)

// maxRoomsPerConnection bounds what one connection can make an instance subscribe to.
const maxRoomsPerConnection = 100

// session is one WebSocket connection. It has no goroutine of its own: the
// server's poller reports the client's frames, which a worker reads and has
// executed in turn (serve). Deliveries go to a bounded queue that the
// flushers write (flushers.go), or, while the socket is full, a writer
// goroutine that drains it and then ends: an idle connection holds no stack,
// no queue, no read or write buffer and no channel (docs/internals.md).
type session struct {
	srv     *Server
	conn    *wsconn.Conn
	claims  auth.Claims  // the token's: its user, its expiry, which rooms it may join (MayJoin)
	release func()       // gives back the connection's place in MAX_CONNECTIONS_PER_USER and _PER_ADDRESS
	rooms   []string     // touched only by handle, one frame at a time
	limit   bucket       // RATE_LIMIT
	heard   atomic.Int64 // when the client last sent a whole frame, as monotonic ns since epoch
	// writeDeadline is the socket's write deadline in Unix ns; only the
	// socket's writer (a flusher, or the writer goroutine) touches it (8
	// bytes: a time.Time would push the session into the next allocation
	// size).
	writeDeadline int64

	// due is when the session's next tick is (monotonic ns since epoch, 0:
	// none): the server's ticker (ticks.go) runs it, with no timer of the
	// session's own.
	due atomic.Int64

	mu      sync.Mutex // guards the fields below
	queue   []*protocol.Delivery
	taken   chan struct{} // closed when the writer takes the queue or the session closes
	history int32         // catch-up frames in queue: outside SEND_QUEUE's bound
	// arrived is when the last frame was queued, since when the flush of
	// a deferred session was deferred, in coalesceTicks since epoch; they
	// wrap every 16 s, so a frame after an idle of about a multiple of that
	// may be taken as hot, and wait one WRITE_COALESCE window at most.
	arrived, since uint16
	writing        bool // a flusher or a writer goroutine has the queue
	closed         bool // close was called: code and reason are set
	ended          bool // end has begun: the reading is over
	// finished: the writer has shut the socket down, which end waits for
	// on done, made only then (an idle connection holds no channel).
	finished bool
	gaps     uint8 // whether each of the last two arrival gaps was shorter than WRITE_COALESCE, a bit each (arrive)
	wait     uint8 // what the flush waits for: waitLine, waitAnswer, waitMessage, a bit each
	code     int16 // a close code (1000-4999): beside the flags, it keeps the session in the 240-byte size class
	watch    *netpoll.Watch
	reason   string
	done     chan struct{}
}

var _ hub.Member = (*session)(nil)

// The bits of session.wait, in one byte, which the 240 bytes of a session
// had room for.
const (
	// waitLine: the session waits in the flushers' deferred line
	// (flushers.later) until its window ends, or a frame ends it (arrive).
	waitLine uint8 = 1 << iota
	// waitAnswer: a send of the client's awaits Redis's answer, and the
	// frames queued meanwhile (its own message among them, as a rule) wait
	// for the ack (awaitAnswer).
	waitAnswer
	// waitMessage: the ack came before the client's own message and waits
	// for it (answer); never beside waitAnswer.
	waitMessage
)

// writeTimeout bounds a batch's write: a client that takes longer is gone.
const writeTimeout = 10 * time.Second

// ping is the queue's marker for a ping control frame.
var ping = &protocol.Delivery{}

func newSession(srv *Server, conn *wsconn.Conn, claims auth.Claims) *session {
	return &session{
		srv: srv, conn: conn, claims: claims,
		limit: bucket{tokens: float64(srv.cfg.RateBurst), at: time.Since(epoch)},
	}
}

// Deliver implements hub.Member: never blocks; SEND_QUEUE live frames
// waiting close the session as a slow consumer.
func (s *session) Deliver(d *protocol.Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.queueable() {
		return false
	}
	s.queue = append(s.queue, d)
	s.arrive()
	return true
}

// queueable tells whether a live frame may join the queue (s.mu is held):
// not once the session closed, nor past SEND_QUEUE, which closes it.
func (s *session) queueable() bool {
	if s.closed {
		return false
	}
	if len(s.queue)-int(s.history) >= s.srv.cfg.SendQueue {
		s.closeLocked(protocol.CloseTryAgainLate, "slow consumer: send queue full")
		return false
	}
	return true
}

// Catchup implements hub.Member: history frames join the queue outside its
// bound; the hub sends the next page only once Drained says this one was
// taken, so a page is written at once, never deferred (WRITE_COALESCE): no
// later page could share its write, and the resume would wait a window a
// page.
func (s *session) Catchup(ds []*protocol.Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.queue = append(s.queue, ds...)
	s.history += int32(len(ds))
	s.wake()
	return true
}

// Drained implements hub.Member: it waits until the writer has taken every
// catch-up frame queued, which it does once it has written the batch before.
func (s *session) Drained(ctx context.Context) error {
	return s.untilTaken(ctx, func() bool { return s.history > 0 })
}

// untilTaken returns at once unless waiting (called with s.mu held) says
// the queue holds too much, and then once the writer next takes the queue;
// errClosing once the session closes.
func (s *session) untilTaken(ctx context.Context, waiting func() bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosing
	}
	if !waiting() {
		s.mu.Unlock()
		return nil
	}
	if s.taken == nil {
		s.taken = make(chan struct{})
	}
	taken := s.taken
	s.mu.Unlock()
	select {
	case <-taken:
		if s.isClosed() {
			return errClosing
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements hub.Member.
func (s *session) Close(code int, reason string) { s.close(code, reason) }

// close has the writer send a close frame with code (none for 0) and end
// the connection; the first call wins.
func (s *session) close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(code, reason)
}

func (s *session) closeLocked(code int, reason string) {
	if s.closed {
		return
	}
	s.closed, s.code, s.reason = true, int16(code), reason
	if code == protocol.CloseTryAgainLate {
		s.srv.m.SlowConsumers.Inc() // here only: one count per session closed
	}
	s.signalTaken()
	s.wake()
}

// signalTaken wakes Drained's waiters; s.mu is held.
func (s *session) signalTaken() {
	s.history = 0
	if s.taken != nil {
		close(s.taken)
		s.taken = nil
	}
}

// wake has a flusher write the queue at once, deferred or not: a session
// that closes, or any without WRITE_COALESCE; s.mu is held.
func (s *session) wake() {
	switch {
	case !s.writing:
		s.writing = true
		s.srv.flushers.add(s)
	case s.wait&waitLine != 0:
		s.wait &^= waitLine | waitMessage
		s.srv.flushers.add(s)
	}
}

// arrive has the frames just queued written (s.mu is held): at once,
// unless the session receives a hot stream, one whose last two frames each
// came less than WRITE_COALESCE after the one before. Then the flush is
// deferred by the window, and the frames that arrive meanwhile go out in
// the same write: on a busy room the kernel's loopback write is most of
// the CPU a delivery costs (docs/internals.md). A frame that arrives at a
// deferred session ends the deferral at once when the next one, as far
// apart as this one came, would come past the window: waiting on would
// add a frame's wait and no frame to the write. So a stream a little
// sparser than the window still merges its frames in pairs however the
// timer and the next frame race, and a frame of a steady stream waits for
// the next one, not for the whole window. While the client's send awaits
// its answer, a frame does not end the deferral (the ack ends it), and
// once an ack waits for its message, the next frame does. A session that
// closes is never deferred.
func (s *session) arrive() {
	w := s.srv.cfg.WriteCoalesce
	if w == 0 {
		s.wake()
		return
	}
	now := max(1, coalesceNow()) // arrived is 0 until the first frame, which has no gap
	gap := time.Duration(now-s.arrived) * coalesceTick
	s.gaps = s.gaps << 1 & 3
	if gap < w && s.arrived != 0 {
		s.gaps |= 1
	}
	s.arrived = now
	switch {
	case !s.writing:
		s.writing = true
		s.flushSoon()
	case s.wait&waitLine == 0 || s.wait&waitAnswer != 0:
		// Its flush is under way, or the frames wait for the ack.
	case s.wait&waitMessage != 0 || time.Duration(now-s.since)*coalesceTick+gap >= w:
		s.wait &^= waitLine | waitMessage
		s.srv.flushers.add(s)
	}
}

// flushSoon hands the queue to the flushers (s.mu is held, writing set):
// at once, or once the window has passed if the stream is hot (arrive) or
// the client's send or its ack is answered soon (answer).
func (s *session) flushSoon() {
	if w := s.srv.cfg.WriteCoalesce; w > 0 && (s.gaps == 3 || s.wait&(waitAnswer|waitMessage) != 0) && !s.closed {
		s.wait |= waitLine
		s.since = coalesceNow()
		s.srv.m.WritesDeferred.Inc()
		s.srv.flushers.later(s, time.Since(epoch)+w)
		return
	}
	s.srv.flushers.add(s)
}

// coalesceTick is the unit of a session's arrival times: fine enough
// beside a window of milliseconds, and 16 bits of it, which keep the
// session in its 240-byte size class, span 16 s.
const coalesceTick = 250 * time.Microsecond

func coalesceNow() uint16 { return uint16(time.Since(epoch) / coalesceTick) }

// undefer takes s out of the deferral when its window ends: false if its
// close or an early end took it out first. A session deferred again since
// an early end is taken out by its first turn: it waits less, never more.
func (s *session) undefer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.wait&waitLine != 0
	if was {
		// A send answered later than the window, or a message that never
		// came, is not waited for again.
		s.wait = 0
	}
	return was
}

func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *session) send(frame []byte) { s.Deliver(&protocol.Delivery{Frame: frame}) }

func (s *session) refuse(e *protocol.Error) { s.send(protocol.ErrorFrame(e)) }

// start serves the connection from now on: the poller reports the client's
// frames, and nothing waits for them meanwhile.
func (s *session) start() {
	s.srv.m.ConnectionsActive.Inc()
	s.conn.SetReadLimit(int64(s.srv.cfg.MaxMessageBytes))
	s.conn.SetPongHandler(s.pong)
	s.heardNow()
	s.conn.Rest() // until the client speaks: the upgrade left nothing to read
	s.schedule()
	s.mu.Lock()
	defer s.mu.Unlock()
	serve := s.serve
	// Held until the watch is set: a report can come before Watch returns,
	// and its serve waits here for it.
	var err error
	if s.watch, err = s.conn.Watch(s.srv.poller, func() { s.srv.workers.do(serve) }); err != nil {
		// Likely fs.epoll.max_user_watches: each socket takes one, the
		// poller's (an upgraded socket is out of Go's poller).
		s.srv.log.Error("session not watched: closed", "user", s.claims.User, "err", err)
		s.srv.workers.do(func() { s.end(err) })
	}
}

// serve runs on a worker when the poller reports the client: it reads and
// handles what the client sent, gives the read buffer back and re-arms the
// watch, or ends the session once the connection failed or closed.
func (s *session) serve() {
	if s.hasEnded() {
		return // a report that came after the watch stopped: nothing to read
	}
	err := s.conn.Fill()
	if err == nil {
		err = s.readBuffered()
	}
	if err == nil {
		s.mu.Lock()
		w, ended := s.watch, s.ended
		s.mu.Unlock()
		if ended {
			return // the session ended while this report was read
		}
		s.conn.Rest() // before Arm: the next report's worker reads
		if err = w.Arm(); err == nil {
			return
		}
	}
	s.end(err)
}

func (s *session) hasEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// end closes the connection once reading it is over (the first call
// wins), then leaves every room.
func (s *session) end(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	w := s.watch
	s.mu.Unlock()
	if errors.Is(err, websocket.ErrReadLimit) {
		s.close(protocol.CloseTooLarge, "frame larger than "+strconv.Itoa(s.srv.cfg.MaxMessageBytes)+" bytes")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		// Only a frame begun has a read deadline (readFrame).
		s.close(protocol.ClosePolicy, reasonFrameTimeout)
	} else {
		// The client closed, vanished or missed its pongs: nothing to tell it.
		s.close(0, "connection ended")
	}
	s.awaitFinish()
	if w != nil {
		w.Stop()
	}
	s.conn.Close()
	s.due.Store(0)
	for _, room := range s.rooms {
		s.srv.hub.Leave(s, room)
	}
	s.srv.forget(s)
	if s.release != nil {
		s.release()
	}
	s.srv.m.ConnectionsActive.Dec()
}

// readTimeout is how long the client may stay silent: two missed pongs.
func (s *session) readTimeout() time.Duration { return 2*s.srv.cfg.PingInterval + 5*time.Second }

func (s *session) pong(string) error {
	s.heardNow()
	return nil
}

// heardNow notes that the client sent a whole frame: tick ends a session
// silent for longer than readTimeout. A frame trickling in is bounded by
// FRAME_TIMEOUT instead (readFrame).
func (s *session) heardNow() { s.heard.Store(int64(time.Since(epoch))) }

// epoch is what heard counts from: time.Since reads the monotonic clock, so
// a step of the wall clock neither closes every session nor keeps dead ones.
var epoch = time.Now()

// schedule sets the session's next tick: the next ping, or the token's
// expiry if that comes first.
func (s *session) schedule() {
	s.due.Store(int64(time.Since(epoch) + min(s.srv.cfg.PingInterval, time.Until(s.claims.Expires))))
}

// tick closes the session once its token has expired or its client has
// missed two pongs, and otherwise queues a ping behind what is queued and
// sets the next tick. Only the server's ticker runs it, one at a time.
func (s *session) tick() {
	s.due.Store(0) // none unless the session goes on
	if !time.Now().Before(s.claims.Expires) {
		s.close(protocol.ClosePolicy, "token expired")
		return
	}
	if time.Since(epoch)-time.Duration(s.heard.Load()) > s.readTimeout() {
		s.close(0, "client silent") // gone: nothing to tell it
		return
	}
	if s.Deliver(ping) {
		s.schedule()
	}
}

// readBuffered handles frames until none is left in the read buffer.
// Pings and pongs are consumed before gorilla sees them: after a control
// frame gorilla goes on to wait for the next data frame, which on an idle
// connection holds a deep stack for as long as the client is silent (and
// would run FRAME_TIMEOUT against that silence). One begun is waited for,
// FRAME_TIMEOUT at most.
func (s *session) readBuffered() error {
	for {
		skipped, err := s.conn.SkipControl(s.srv.cfg.FrameTimeout)
		if err != nil {
			return err
		}
		if !skipped {
			if err := s.awaitRoom(); err != nil {
				return err
			}
			if err := s.readFrame(); err != nil {
				return err
			}
			if s.isClosed() {
				return errClosing
			}
		}
		if s.conn.Buffered() == 0 {
			return nil
		}
	}
}

var errClosing = errors.New("session closing")

// readFrame reads the client's next frame into a pooled buffer, which it
// returns once the frame is handled: handle keeps nothing of it. A message
// that is not all in the read buffer yet must arrive whole within
// FRAME_TIMEOUT: the read waits for it under a deadline, so a client that
// trickles a frame holds a worker that long at most, and the session ends
// (end closes it with 1008).
func (s *session) readFrame() error {
	if d := s.srv.cfg.FrameTimeout; d > 0 && !s.conn.Whole() {
		s.conn.SetReadDeadline(time.Now().Add(d))
		defer s.conn.SetReadDeadline(time.Time{})
	}
	kind, r, err := s.conn.NextReader()
	if err != nil {
		return err
	}
	buf := readBuffers.Get().(*bytes.Buffer)
	defer putReadBuffer(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	s.heardNow()
	s.srv.m.FramesReceived.Inc()
	s.handle(kind, buf.Bytes())
	return nil
}

var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putReadBuffer pools buf unless a large frame grew it: those are rare, and
// pooled they would keep up to MAX_MESSAGE_BYTES each between collections.
func putReadBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 4<<10 {
		readBuffers.Put(buf)
	}
}

// awaitRoom holds the reader, before it takes the client's next frame,
// while half of SEND_QUEUE is waiting, until the writer takes the queue.
// Each frame queues a reply (an ack, or a refusal in microseconds), and a
// buffered burst is handled faster than it is written; with one CPU the
// writer does not run at all meanwhile. So a client that sends faster than
// it reads is slowed down, as TCP slows a sender, not closed as a slow
// consumer; the other half of the queue stays for the rooms' deliveries.
func (s *session) awaitRoom() error {
	// A queue that is not empty has a writer, which will take it.
	return s.untilTaken(context.Background(), func() bool {
		return len(s.queue)-int(s.history) >= max(1, s.srv.cfg.SendQueue/2)
	})
}

// handle executes one client frame.
func (s *session) handle(kind int, data []byte) {
	if kind != websocket.TextMessage {
		s.refuse(protocol.Errorf(protocol.CodeBadRequest, "frames are JSON text"))
		return
	}
	f, err := protocol.DecodeClient(data)
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if f.Op == protocol.OpSend {
			s.srv.m.Received.WithLabelValues(metrics.ResultRejected).Inc()
		}
		s.refuse(pe)
		return
	}
	switch f.Op {
	case protocol.OpJoin:
		s.join(f)
	case protocol.OpLeave:
		if !s.leave(f.Room) {
			s.refuse(protocol.Errorf(protocol.CodeNotJoined, "not in room %s", f.Room))
		}
	case protocol.OpSend:
		s.publish(f)
	}
}

func (s *session) joined(room string) bool { return slices.Contains(s.rooms, room) }

// leave leaves room if the session is in it.
func (s *session) leave(room string) bool {
	i := slices.Index(s.rooms, room)
	if i < 0 {
		return false
	}
	s.rooms = slices.Delete(s.rooms, i, i+1)
	s.srv.hub.Leave(s, room)
	return true
}

func (s *session) join(f protocol.ClientFrame) {
	if !s.claims.MayJoin(f.Room) {
		s.refuse(&protocol.Error{Code: protocol.CodeForbidden, Room: f.Room, Message: "your token does not open room " + f.Room + " (its rooms claim)"})
		return
	}
	// A second join re-syncs (with since) or restarts at the latest seq.
	s.leave(f.Room)
	if len(s.rooms) >= maxRoomsPerConnection {
		s.refuse(protocol.Errorf(protocol.CodeBadRequest, "at most %d rooms per connection", maxRoomsPerConnection))
		return
	}
	quotas := s.srv.cfg.Quotas
	if ok, retry := s.srv.allow(protocol.QuotaUserJoins, s.claims.User, quotas.UserJoins); !ok {
		e := quotaError(protocol.QuotaUserJoins, quotas.UserJoins, retry)
		e.Room = f.Room
		s.refuse(e)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The catch-up of a resume runs on after this returns, so the session
	// goes on reading the client's frames meanwhile.
	_, err := s.srv.hub.JoinIf(ctx, s, f.Room, f.Since, func(at protocol.Position) error { return s.admit(f, at) })
	var pe *protocol.Error
	if errors.As(err, &pe) {
		s.refuse(pe)
		return
	}
	if err != nil {
		s.srv.log.Warn("join failed", "room", f.Room, "err", err)
		s.refuse(protocol.Errorf(protocol.CodeInternal, "could not join %s: the message bus is unavailable; retry", f.Room))
		return
	}
	// A copy: the decoded room name shares the string of the whole frame
	// (protocol.DecodeClient), which would stay alive with it (48 bytes
	// instead of 16 for a name of 15).
	s.rooms = append(s.rooms, strings.Clone(f.Room))
}

// admit applies the quotas that depend on where the room stands: a join of
// a room without messages may create it (QUOTA_USER_ROOMS), and a resume
// from past Redis's history window reads Postgres (QUOTA_USER_RESUMES).
func (s *session) admit(f protocol.ClientFrame, at protocol.Position) error {
	quotas := s.srv.cfg.Quotas
	check := func(name string, r config.Rate) error {
		if ok, retry := s.srv.allow(name, s.claims.User, r); !ok {
			e := quotaError(name, r, retry)
			e.Room = f.Room
			return e
		}
		return nil
	}
	if at.Seq == 0 {
		return check(protocol.QuotaUserRooms, quotas.UserRooms)
	}
	if f.Since != nil && at.Seq-*f.Since > int64(s.srv.cfg.HistorySize) {
		return check(protocol.QuotaUserResumes, quotas.UserResumes)
	}
	return nil
}

func (s *session) publish(f protocol.ClientFrame) {
	received := s.srv.m.Received
	if !s.joined(f.Room) {
		received.WithLabelValues(metrics.ResultRejected).Inc()
		s.refuse(&protocol.Error{Code: protocol.CodeNotJoined, Message: "join " + f.Room + " before sending to it", Ref: f.ID})
		return
	}
	if !s.limit.take(time.Since(epoch), s.srv.cfg.RateLimit, float64(s.srv.cfg.RateBurst)) {
		received.WithLabelValues(metrics.ResultRateLimited).Inc()
		s.refuse(&protocol.Error{Code: protocol.CodeRateLimited, Message: "too many messages; slow down", Ref: f.ID})
		return
	}
	if ok, retry := s.srv.allow(protocol.QuotaUserSends, s.claims.User, s.srv.cfg.Quotas.UserSends); !ok {
		received.WithLabelValues(metrics.ResultRateLimited).Inc()
		e := quotaError(protocol.QuotaUserSends, s.srv.cfg.Quotas.UserSends, retry)
		e.Ref = f.ID
		s.refuse(e)
		return
	}
	s.awaitAnswer()
	now := time.Now()
	acc, err := s.srv.broker.Publish(s.srv.sendDeadline.at(now), f.Room, s.claims.User, f.Text, f.ID, now)
	if e := s.publishError(f, err); e != nil {
		s.answer(protocol.ErrorFrame(e), "", 0)
		return
	}
	if acc.Duplicate {
		received.WithLabelValues(metrics.ResultDuplicate).Inc()
		s.answer(protocol.Ack(f.Room, f.ID, acc.Seq), "", 0) // its message went long ago
		return
	}
	received.WithLabelValues(metrics.ResultAccepted).Inc()
	s.answer(protocol.Ack(f.Room, f.ID, acc.Seq), f.Room, acc.Seq)
}

// publishError is the refusal of a send that Publish failed with err, nil
// if it did not, and counts it.
func (s *session) publishError(f protocol.ClientFrame, err error) *protocol.Error {
	received := s.srv.m.Received
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broker.ErrOverloaded):
		received.WithLabelValues(metrics.ResultOverloaded).Inc()
		return &protocol.Error{Code: protocol.CodeOverloaded, Message: "message not accepted: the queue to the history database is full; retry later with the same id", Ref: f.ID}
	case errors.Is(err, broker.ErrNoSeqs):
		received.WithLabelValues(metrics.ResultError).Inc()
		s.srv.m.PostgresErrors.WithLabelValues(metrics.OpReserve).Inc()
		s.srv.log.Warn("publish failed", "room", f.Room, "err", err)
		return &protocol.Error{Code: protocol.CodeInternal, Message: "message not accepted: the room must reserve seqs in the history database, which is unavailable; retry with the same id", Ref: f.ID}
	default:
		received.WithLabelValues(metrics.ResultError).Inc()
		s.srv.m.RedisErrors.WithLabelValues(metrics.OpPublish).Inc()
		s.srv.log.Warn("publish failed", "room", f.Room, "err", err)
		return &protocol.Error{Code: protocol.CodeInternal, Message: "message not accepted: the message bus is unavailable; retry with the same id", Ref: f.ID}
	}
}

// awaitAnswer marks a send of the client's as on its way to Redis: the
// frames queued until it is answered wait for the answer (at most one
// WRITE_COALESCE window), so that the client's own message, which the
// room's fan-out brings about when the ack comes, shares the ack's write:
// a sender would otherwise take two writes, in a room of 10 a tenth of the
// writes (docs/internals.md).
func (s *session) awaitAnswer() {
	if s.srv.cfg.WriteCoalesce == 0 {
		return
	}
	s.mu.Lock()
	s.wait |= waitAnswer
	s.mu.Unlock()
}

// answer queues the answer to the client's send, an ack or a refusal.
// seq > 0 is the seq in room the send was accepted under: if its message
// is not queued yet, the ack waits for it, as long as a frame of a hot
// stream would wait for the next (arrive ends the wait).
func (s *session) answer(frame []byte, room string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.wait&waitAnswer != 0
	s.wait &^= waitAnswer
	if !s.queueable() {
		return
	}
	s.queue = append(s.queue, &protocol.Delivery{Frame: frame})
	ackFirst := held && seq > 0 && !slices.ContainsFunc(s.queue, func(d *protocol.Delivery) bool {
		return d.Seq == seq && d.Room == room && d.IsMessage()
	})
	switch {
	case ackFirst && !s.writing:
		s.writing = true
		s.wait |= waitMessage
		s.flushSoon()
	case ackFirst && s.wait&waitLine != 0:
		s.wait |= waitMessage
	default:
		s.wake()
	}
}

// flush writes the queue without waiting for the socket, on a flusher's
// goroutine (flushers.go), using buf for the frames, which it returns. A
// socket that takes less, a write that fails, a batch too large for one
// write and the close go to the writer goroutine instead, which waits.
func (s *session) flush(buf []byte) []byte {
	s.mu.Lock()
	batch, closed := s.queue, s.closed
	if closed {
		s.mu.Unlock()
		s.srv.workers.do(s.write)
		return buf
	}
	s.queue = nil
	s.signalTaken()
	if len(batch) == 0 {
		s.writing = false
		s.mu.Unlock()
		return buf
	}
	s.mu.Unlock()
	buf = buf[:0]
	for _, d := range batch {
		if d == ping {
			buf = wsconn.AppendPing(buf)
		} else {
			buf = wsconn.AppendText(buf, d.Frame)
		}
	}
	wrote := false
	if len(buf) <= maxFlush {
		var err error
		if wrote, err = s.conn.TryWrite(buf); err != nil {
			s.close(protocol.CloseInternal, "write failed")
			s.srv.workers.do(s.write)
			return buf
		}
	}
	if !wrote {
		s.srv.workers.do(func() { s.writeAfter(batch) })
		return buf
	}
	for _, d := range batch {
		if d != ping {
			s.sent(d)
		}
	}
	if s.conn.Pending() {
		s.srv.workers.do(s.write)
		return buf
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 && !s.closed {
		s.writing = false
		return buf
	}
	// More came meanwhile: the session goes to the back of the line, or
	// waits for its window.
	s.flushSoon()
	return buf
}

// maxFlush bounds the frames a flusher writes for one session at a time.
const maxFlush = 16 << 10

// writeAfter writes batch, which a flusher took, and goes on as the writer.
func (s *session) writeAfter(batch []*protocol.Delivery) {
	if !s.writeBatch(batch) {
		s.close(protocol.CloseInternal, "write failed")
	}
	s.write()
}

// write drains the queue, a batch at a time, then ends; after close it
// finishes the connection. While it runs it is the only goroutine that
// writes to the socket.
func (s *session) write() {
	for {
		s.mu.Lock()
		batch, closed := s.queue, s.closed
		s.queue = nil
		s.signalTaken()
		if len(batch) == 0 && !closed && !s.conn.Pending() {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if closed {
			s.finish(batch)
			return
		}
		if !s.writeBatch(batch) {
			s.close(protocol.CloseInternal, "write failed")
		}
	}
}

// writeBatch writes frames to the socket in one go, under one deadline.
func (s *session) writeBatch(batch []*protocol.Delivery) bool {
	s.keepDeadline(time.Now())
	s.conn.Hold()
	ok := true
	for _, d := range batch {
		if ok = s.writeFrame(d); !ok {
			break
		}
	}
	return s.conn.Release() == nil && ok
}

// keepDeadline gives the socket's writes writeTimeout/2 to writeTimeout. The
// deadline moves only when less than half of it is left: each move updates a
// runtime timer, which at one batch per delivery cost a tenth of an
// instance's CPU in the 1000 rooms × 10 profile.
func (s *session) keepDeadline(now time.Time) {
	if time.Duration(s.writeDeadline-now.UnixNano()) < writeTimeout/2 {
		s.writeDeadline = now.Add(writeTimeout).UnixNano()
		s.conn.SetWriteDeadline(time.Unix(0, s.writeDeadline))
	}
}

// finish flushes what is queued when the server drains (the client would
// otherwise resume it), sends the close frame and shuts the socket down:
// that wakes the reading side, which closes it (end).
func (s *session) finish(queued []*protocol.Delivery) {
	defer s.finishDone()
	defer s.conn.Shutdown()
	if s.code == protocol.CloseGoingAway && !s.writeBatch(queued) {
		s.code = 0 // the socket failed: no close frame can reach the client
	}
	if s.code == 0 {
		s.srv.m.Closed.WithLabelValues(metrics.ClosedByClient).Inc()
		return
	}
	s.srv.m.Closed.WithLabelValues(strconv.Itoa(int(s.code))).Inc()
	msg := websocket.FormatCloseMessage(int(s.code), s.reason)
	s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	if s.code == protocol.CloseTooLarge || s.reason == reasonFrameTimeout {
		s.linger()
	}
}

// finishDone records that the socket is shut down and wakes end.
func (s *session) finishDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	if s.done != nil {
		close(s.done)
	}
}

// awaitFinish returns once the writer has shut the socket down (finish).
func (s *session) awaitFinish() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	if s.done == nil {
		s.done = make(chan struct{})
	}
	done := s.done
	s.mu.Unlock()
	<-done
}

// reasonFrameTimeout closes a session (1008) whose client began a frame and
// did not finish it within FRAME_TIMEOUT.
const reasonFrameTimeout = "frame not completed within FRAME_TIMEOUT"

// linger drops what the client still sends (the rest of an oversize frame)
// for up to a second or until it hangs up: a socket closed with unread data
// is reset, and a proxy in between may then drop the close frame.
func (s *session) linger() {
	nc := s.conn.NetConn()
	nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, nc)
}

func (s *session) writeFrame(d *protocol.Delivery) bool {
	if d == ping {
		return s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)) == nil
	}
	if err := s.conn.WriteMessage(websocket.TextMessage, d.Frame); err != nil {
		return false
	}
	s.sent(d)
	return true
}

// sent counts a frame written.
func (s *session) sent(d *protocol.Delivery) {
	s.srv.m.FramesSent.Inc()
	if d.IsMessage() {
		s.srv.m.Delivered.Inc()
		if !d.Accepted.IsZero() {
			s.srv.m.DeliveryLatency.Observe(time.Since(d.Accepted).Seconds())
		}
	}
}

// bucket is a token bucket; its rate and burst are the server's, not
// copied into every session (16 bytes of an idle connection's).
type bucket struct {
	tokens float64
	at     time.Duration // the last take, on the monotonic clock since epoch
}

// take spends a token if there is one: rate come a second, at most burst
// saved up.
func (b *bucket) take(now time.Duration, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+(now-b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
