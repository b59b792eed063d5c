package chaos

import (
	"encoding/json"
	"sync"
)

// wireFrame is any frame either way, read by its contract names.
type wireFrame struct {
	Op       string `json:"op"`
	Room     string `json:"room"`
	Seq      int64  `json:"seq"`
	Since    *int64 `json:"since"`
	Epoch    string `json:"epoch"`
	User     string `json:"user"`
	ID       string `json:"id"`
	Text     string `json:"text"`
	Code     string `json:"code"`
	Ref      string `json:"ref"`
	From     int64  `json:"from"`
	To       int64  `json:"to"`
	Instance string `json:"instance"`
	Quota    string `json:"quota"`
}

// Tracer records one client's frames (it fits client.Options.Trace). Its
// connections are numbered gen*1000+conn, so a client that is replaced by
// a new one under the same number (a reconnect by its user) keeps its
// connections apart.
func (r *Recorder) Tracer(client, gen int, user string) func(conn int, sent bool, frame []byte) {
	var mu sync.Mutex
	rooms := map[string]string{}  // a send's id → its room: refusals do not name it
	instances := map[int]string{} // a connection → the instance its welcome named
	return func(conn int, sent bool, data []byte) {
		var f wireFrame
		if json.Unmarshal(data, &f) != nil {
			return
		}
		e := Event{Client: client, Conn: gen*1000 + conn, Room: f.Room}
		switch {
		case sent && f.Op == "join":
			e.Kind, e.Epoch = Joining, f.Epoch
			if f.Since != nil {
				e.Since, e.HasSince = *f.Since, true
			}
		case sent && f.Op == "leave":
			e.Kind = Leaving
		case sent && f.Op == "send":
			mu.Lock()
			rooms[f.ID] = f.Room
			mu.Unlock()
			e.Kind, e.User, e.ID, e.Text = Sent, user, f.ID, f.Text
		case sent:
			return
		case f.Op == "welcome":
			mu.Lock()
			instances[conn] = f.Instance
			mu.Unlock()
			return
		case f.Op == "joined":
			e.Kind, e.Seq, e.Epoch = Joined, f.Seq, f.Epoch
		case f.Op == "message":
			e.Kind, e.Seq, e.User, e.ID, e.Text = Delivered, f.Seq, f.User, f.ID, f.Text
		case f.Op == "ack":
			mu.Lock()
			e.Instance = instances[conn]
			mu.Unlock()
			e.Kind, e.Seq, e.User, e.ID = Acked, f.Seq, user, f.ID
		case f.Op == "error" && f.Code == "history_gap":
			e.Kind, e.From, e.To = Gap, f.From, f.To
		case f.Op == "error":
			if f.Ref != "" {
				mu.Lock()
				e.Room = rooms[f.Ref]
				mu.Unlock()
			}
			e.Kind, e.User, e.ID, e.Code, e.Quota = Refused, user, f.Ref, f.Code, f.Quota
		default:
			return
		}
		r.Record(e)
	}
}
