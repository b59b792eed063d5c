package main

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-dev/switchboard/app/auth"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// server speaks docs/protocol.md's frames with rooms held in memory: join
// (without resume: since is ignored), leave, send, acks and deliveries with
// per-room seqs from 1. Left out, since they are not the per-delivery work
// the comparison asks about: Redis, Postgres, history and resume, dedupe of
// resent ids, quotas, origins, the drain, slow-consumer handling (a member
// that stops reading stalls its room) and metrics.
type server struct {
	verify   *auth.Verifier
	upgrader websocket.Upgrader
	mu       sync.Mutex
	rooms    map[string]*room
}

// room holds its members and its seq. Its lock is held while a message is
// numbered and written to every member, which keeps each member's stream
// in seq order without a queue or a writer goroutine: each delivery is one
// write on the sender's goroutine, nothing coalesced.
type room struct {
	mu      sync.Mutex
	seq     int64
	members map[*member]struct{}
}

type member struct {
	ws    *websocket.Conn
	wmu   sync.Mutex       // one writer at a time: its own reader and the senders of its rooms
	rooms map[string]*room // touched by its reader only
}

func newServer(verify *auth.Verifier) http.Handler {
	s := &server{verify: verify, rooms: map[string]*room{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	return mux
}

func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	claims, err := s.verify.FromRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	m := &member{ws: ws, rooms: map[string]*room{}}
	defer func() {
		for name := range m.rooms {
			m.leave(name)
		}
		ws.Close()
	}()
	if m.write(protocol.Welcome("floor", claims.User)) != nil {
		return
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		f, err := protocol.DecodeClient(data)
		if err != nil {
			var refusal *protocol.Error // DecodeClient refuses with one
			errors.As(err, &refusal)
			if m.write(protocol.ErrorFrame(refusal)) != nil {
				return
			}
			continue
		}
		switch f.Op {
		case protocol.OpJoin:
			err = m.join(f.Room, s.room(f.Room))
		case protocol.OpLeave:
			m.leave(f.Room)
		case protocol.OpSend:
			err = m.send(f, claims.User)
		}
		if err != nil {
			return
		}
	}
}

// room is the room named name, made on first use (never removed: a
// benchmark's rooms are few and short-lived).
func (s *server) room(name string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.rooms[name]
	if rm == nil {
		rm = &room{members: map[*member]struct{}{}}
		s.rooms[name] = rm
	}
	return rm
}

// join answers with the room's seq under its lock, so that the joined
// frame comes before every message numbered after it.
func (m *member) join(name string, rm *room) error {
	m.rooms[name] = rm
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.members[m] = struct{}{}
	return m.write(protocol.Joined(name, protocol.Position{Seq: rm.seq}))
}

func (m *member) leave(name string) {
	rm := m.rooms[name]
	if rm == nil {
		return
	}
	delete(m.rooms, name)
	rm.mu.Lock()
	delete(rm.members, m)
	rm.mu.Unlock()
}

// send numbers the message, writes its one encoded frame to every member
// (the sender too), then acks it.
func (m *member) send(f protocol.ClientFrame, user string) error {
	rm := m.rooms[f.Room]
	if rm == nil {
		return m.write(protocol.ErrorFrame(&protocol.Error{Code: protocol.CodeNotJoined, Message: "join " + f.Room + " before sending to it", Ref: f.ID}))
	}
	rm.mu.Lock()
	rm.seq++
	seq := rm.seq
	frame := protocol.Message{Room: f.Room, Seq: seq, User: user, Text: f.Text, ID: f.ID, TS: time.Now()}.Frame()
	for to := range rm.members {
		_ = to.write(frame) // a member whose socket failed is gone once its reader sees it
	}
	rm.mu.Unlock()
	return m.write(protocol.Ack(f.Room, f.ID, seq))
}

func (m *member) write(frame []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	return m.ws.WriteMessage(websocket.TextMessage, frame)
}
