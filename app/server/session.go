package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/hub"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// maxRoomsPerConnection bounds what one connection can make an instance subscribe to.
const maxRoomsPerConnection = 100

// session is one WebSocket connection: a reader (run's goroutine) that
// decodes and executes client frames, and a writer that owns every write to
// the socket and drains a bounded queue, so no room ever waits for it.
type session struct {
	srv     *Server
	conn    *websocket.Conn
	user    string
	expires time.Time
	queue   chan *protocol.Delivery
	rooms   map[string]bool // touched only by the reader
	limit   bucket

	closeOnce sync.Once
	closing   chan struct{}
	code      int
	reason    string
}

func newSession(srv *Server, conn *websocket.Conn, user string, expires time.Time) *session {
	return &session{
		srv: srv, conn: conn, user: user, expires: expires,
		queue:   make(chan *protocol.Delivery, srv.cfg.SendQueue),
		rooms:   map[string]bool{},
		limit:   bucket{rate: srv.cfg.RateLimit, burst: float64(srv.cfg.RateBurst), tokens: float64(srv.cfg.RateBurst), at: time.Now()},
		closing: make(chan struct{}),
	}
}

// Deliver implements hub.Member: never blocks; a full queue closes the session.
func (s *session) Deliver(d *protocol.Delivery) bool {
	select {
	case <-s.closing:
		return false
	default:
	}
	select {
	case s.queue <- d:
		return true
	default:
		s.srv.m.SlowConsumers.Inc()
		s.close(protocol.CloseTryAgainLate, "slow consumer: send queue full")
		return false
	}
}

// close asks the writer to send a close frame with code and end the
// connection; the first call wins.
func (s *session) close(code int, reason string) {
	s.closeOnce.Do(func() {
		s.code, s.reason = code, reason
		close(s.closing)
	})
}

func (s *session) send(frame []byte) { s.Deliver(&protocol.Delivery{Frame: frame}) }

func (s *session) refuse(e *protocol.Error) { s.send(protocol.ErrorFrame(e)) }

// run serves the connection until it ends, then leaves every room.
func (s *session) run() {
	cfg := s.srv.cfg
	s.srv.m.ConnectionsActive.Inc()
	defer s.srv.m.ConnectionsActive.Dec()
	written := make(chan struct{})
	go func() {
		defer close(written)
		s.write()
	}()
	expiry := time.AfterFunc(time.Until(s.expires), func() { s.close(protocol.ClosePolicy, "token expired") })
	defer expiry.Stop()

	s.conn.SetReadLimit(int64(cfg.MaxMessageBytes))
	deadline := 2*cfg.PingInterval + 5*time.Second
	s.conn.SetReadDeadline(time.Now().Add(deadline))
	s.conn.SetPongHandler(func(string) error { return s.conn.SetReadDeadline(time.Now().Add(deadline)) })
	s.send(protocol.Welcome(s.srv.cfg.InstanceID, s.user))
	err := s.read(deadline)
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		s.close(protocol.CloseTooLarge, "frame larger than "+strconv.Itoa(cfg.MaxMessageBytes)+" bytes")
	default:
		// The client closed, vanished or missed its pongs: nothing to tell it.
		s.close(0, "connection ended")
	}
	<-written
	for room := range s.rooms {
		s.srv.hub.Leave(s, room)
	}
	s.srv.forget(s)
}

func (s *session) read(deadline time.Duration) error {
	for {
		kind, data, err := s.conn.ReadMessage()
		if err != nil {
			return err
		}
		s.conn.SetReadDeadline(time.Now().Add(deadline))
		s.srv.m.FramesReceived.Inc()
		if kind != websocket.TextMessage {
			s.refuse(protocol.Errorf(protocol.CodeBadRequest, "frames are JSON text"))
			continue
		}
		f, err := protocol.DecodeClient(data)
		var pe *protocol.Error
		if errors.As(err, &pe) {
			if f.Op == protocol.OpSend {
				s.srv.m.Received.WithLabelValues(metrics.ResultRejected).Inc()
			}
			s.refuse(pe)
			continue
		}
		switch f.Op {
		case protocol.OpJoin:
			s.join(f)
		case protocol.OpLeave:
			if !s.rooms[f.Room] {
				s.refuse(protocol.Errorf(protocol.CodeNotJoined, "not in room %s", f.Room))
				continue
			}
			delete(s.rooms, f.Room)
			s.srv.hub.Leave(s, f.Room)
		case protocol.OpSend:
			s.publish(f)
		}
		select {
		case <-s.closing:
			return errClosing
		default:
		}
	}
}

var errClosing = errors.New("session closing")

func (s *session) join(f protocol.ClientFrame) {
	if s.rooms[f.Room] {
		// A second join re-syncs (with since) or restarts at the latest seq.
		delete(s.rooms, f.Room)
		s.srv.hub.Leave(s, f.Room)
	}
	if len(s.rooms) >= maxRoomsPerConnection {
		s.refuse(protocol.Errorf(protocol.CodeBadRequest, "at most %d rooms per connection", maxRoomsPerConnection))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.srv.hub.Join(ctx, s, f.Room, f.Since)
	switch {
	case errors.Is(err, hub.ErrSlowConsumer):
		s.srv.m.SlowConsumers.Inc()
		s.close(protocol.CloseTryAgainLate, "slow consumer: too far behind while resuming")
	case err != nil:
		s.srv.log.Warn("join failed", "room", f.Room, "err", err)
		s.refuse(protocol.Errorf(protocol.CodeInternal, "could not join %s: the message bus is unavailable; retry", f.Room))
	default:
		s.rooms[f.Room] = true
	}
}

func (s *session) publish(f protocol.ClientFrame) {
	received := s.srv.m.Received
	if !s.rooms[f.Room] {
		received.WithLabelValues(metrics.ResultRejected).Inc()
		s.refuse(&protocol.Error{Code: protocol.CodeNotJoined, Message: "join " + f.Room + " before sending to it", Ref: f.ID})
		return
	}
	if !s.limit.take(time.Now()) {
		received.WithLabelValues(metrics.ResultRateLimited).Inc()
		s.refuse(&protocol.Error{Code: protocol.CodeRateLimited, Message: "too many messages; slow down", Ref: f.ID})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	acc, err := s.srv.broker.Publish(ctx, f.Room, s.user, f.Text, f.ID, time.Now())
	if err != nil {
		received.WithLabelValues(metrics.ResultError).Inc()
		s.srv.m.RedisErrors.WithLabelValues(metrics.OpPublish).Inc()
		s.srv.log.Warn("publish failed", "room", f.Room, "err", err)
		s.refuse(&protocol.Error{Code: protocol.CodeInternal, Message: "message not accepted: the message bus is unavailable; retry with the same id", Ref: f.ID})
		return
	}
	result := metrics.ResultAccepted
	if acc.Duplicate {
		result = metrics.ResultDuplicate
	}
	received.WithLabelValues(result).Inc()
	s.send(protocol.Ack(f.Room, f.ID, acc.Seq))
}

// write is the only goroutine that writes to the socket.
func (s *session) write() {
	ping := time.NewTicker(s.srv.cfg.PingInterval)
	defer ping.Stop()
	defer s.conn.Close()
	for {
		select {
		case d := <-s.queue:
			if !s.writeFrame(d) {
				s.close(protocol.CloseInternal, "write failed")
				return
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)); err != nil {
				s.close(protocol.CloseInternal, "ping failed")
				return
			}
		case <-s.closing:
			s.finish()
			if s.code == protocol.CloseTooLarge {
				s.linger()
			}
			return
		}
	}
}

// finish flushes what is queued when the server drains (the client would
// otherwise resume it), then sends the close frame.
func (s *session) finish() {
	if s.code == protocol.CloseGoingAway {
		for flushed := false; !flushed; {
			select {
			case d := <-s.queue:
				if !s.writeFrame(d) {
					flushed = true
				}
			default:
				flushed = true
			}
		}
	}
	if s.code == 0 {
		s.srv.m.Closed.WithLabelValues("client").Inc()
		return
	}
	s.srv.m.Closed.WithLabelValues(strconv.Itoa(s.code)).Inc()
	msg := websocket.FormatCloseMessage(s.code, s.reason)
	s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// linger drops what the client still sends (the rest of an oversize frame)
// for up to a second or until it hangs up: a socket closed with unread data
// is reset, and a proxy in between may then drop the close frame.
func (s *session) linger() {
	nc := s.conn.NetConn()
	nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, nc)
}

func (s *session) writeFrame(d *protocol.Delivery) bool {
	s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := s.conn.WriteMessage(websocket.TextMessage, d.Frame); err != nil {
		return false
	}
	s.srv.m.FramesSent.Inc()
	if d.Seq > 0 {
		s.srv.m.Delivered.Inc()
		if !d.Accepted.IsZero() {
			s.srv.m.DeliveryLatency.Observe(time.Since(d.Accepted).Seconds())
		}
	}
	return true
}

// bucket is a token bucket: rate tokens a second, at most burst saved up.
type bucket struct {
	rate, burst, tokens float64
	at                  time.Time
}

func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
