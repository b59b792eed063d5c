// Package chaos records what chat clients saw while faults were injected and
// checks the recorded history against Switchboard's guarantees, the way
// etcd's robustness tests do: operations and faults run at random, then a
// checker proves the invariants over everything observed, plus what
// Postgres holds at the end.
//
// Two layers are recorded per client: the wire (every frame of every
// connection, Conn >= 1) and what the client library handed its user
// (Conn == 0: messages from Messages, gaps from Errors). The same stream
// rules hold for both.
package chaos

import (
	"fmt"
	"sync"
	"time"
)

// Kind is what an event records.
type Kind int

const (
	Joining   Kind = iota + 1 // a join written (Since, Epoch) or, for the user, a Join/Resume call
	Joined                    // the joined frame (Seq: the room's latest, Epoch)
	Delivered                 // a message (Seq, User, ID, Text)
	Gap                       // a range announced missing, From..To inclusive (To 0: no range named)
	Leaving                   // a leave written
	Sent                      // a send written (ID, Text)
	Acked                     // its ack (Seq, ID)
	Refused                   // an error frame (ID: the send's, Code, Quota), or a refusal a balancer logged for the client
	Fault                     // a fault injected or undone (Text says which; Code, the kind, once it took effect); no client
	// Hostile: a hostile client's attempt refused as it must be (Code: what
	// was refused, a quota's name or "poison <kind>"; Text: how).
	Hostile
	// Breach: a hostile client's poison that got through what must refuse
	// it (acked, upgraded); Code and Text as for Hostile.
	Breach
)

var kindNames = map[Kind]string{
	Joining: "joining", Joined: "joined", Delivered: "delivered", Gap: "gap",
	Leaving: "leaving", Sent: "sent", Acked: "acked", Refused: "refused", Fault: "fault",
	Hostile: "hostile refused", Breach: "BREACH",
}

func (k Kind) String() string { return kindNames[k] }

// Event is one observation. Client numbers the clients; User is the sender
// of a message (for Sent and Acked: the client's own user).
type Event struct {
	Index    int // order of recording, set by the recorder
	Time     time.Time
	Client   int
	Conn     int // the client's connection (1 for the first); 0: the user's view
	Kind     Kind
	Room     string
	Seq      int64
	Since    int64
	HasSince bool
	Epoch    string
	User     string
	ID       string
	Text     string
	From, To int64
	Code     string // a refusal's code; a fault's kind; what a hostile attempt was
	Quota    string // a rate_limited refusal's quota
	Instance string // for an ack: the instance that sent it; for a fault: the instance it SIGKILLs
}

func (e Event) String() string {
	if e.Kind == Fault {
		return fmt.Sprintf("#%d %s FAULT %s", e.Index, e.Time.Format("15:04:05.000"), e.Text)
	}
	s := fmt.Sprintf("#%d %s c%d", e.Index, e.Time.Format("15:04:05.000"), e.Client)
	if e.Conn > 0 {
		s += fmt.Sprintf("/conn%d", e.Conn)
	} else {
		s += "/user"
	}
	s += fmt.Sprintf(" %s %s", e.Kind, e.Room)
	switch e.Kind {
	case Joining:
		if e.HasSince {
			s += fmt.Sprintf(" since=%d", e.Since)
		}
	case Joined:
		s += fmt.Sprintf(" seq=%d", e.Seq)
	case Delivered:
		s += fmt.Sprintf(" seq=%d %s/%s", e.Seq, e.User, e.ID)
	case Gap:
		s += fmt.Sprintf(" %d..%d", e.From, e.To)
		if e.Text != "" {
			s += " (" + e.Text + ")"
		}
	case Sent:
		s += " id=" + e.ID
	case Acked:
		s += fmt.Sprintf(" id=%s seq=%d on %s", e.ID, e.Seq, e.Instance)
	case Refused:
		s += fmt.Sprintf(" id=%s code=%s", e.ID, e.Code)
		if e.Quota != "" {
			s += " quota=" + e.Quota
		}
	case Hostile, Breach:
		s += fmt.Sprintf("%s: %s", e.Code, e.Text)
	}
	if e.Epoch != "" {
		s += " epoch=" + e.Epoch
	}
	return s
}

// Recorder collects events from many goroutines.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Record appends e, stamping its index and, if unset, its time.
func (r *Recorder) Record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Index = len(r.events)
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.events = append(r.events, e)
}

// Events returns a copy of what was recorded, in order.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Stored is one row of the messages table.
type Stored struct {
	Room string
	Seq  int64
	User string
	ID   string // the client's message id
	Text string
}
