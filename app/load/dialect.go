package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// A dialect is the protocol chatload speaks inside WebSocket: Switchboard's
// (docs/protocol.md), or Centrifugo's JSON protocol, so that
// one tool, harness and machine measure both servers alike
// (docs/performance.md). Either way a member opens in two steps (a greeting answered,
// then a join or subscribe answered), sends text that starts with its send
// time, and reads deliveries that carry a per-room seq.
type dialect interface {
	// path is the WebSocket path when -endpoint has none.
	path() string
	// greeting is the client's first frame; nil when the server speaks first.
	greeting(token string) []byte
	// setup reads a frame before the member has joined: the frame to answer
	// with, and once joined, the room's seq at the join.
	setup(state connState, data []byte, room string) (reply []byte, joined bool, seq int64, err error)
	// send is a send of text to room, the publisher's n-th.
	send(room string, k, n int, text string) []byte
	// events appends what a frame of the open stream holds.
	events(data []byte, dst []event) []event
}

type event struct {
	kind eventKind
	seq  int64     // delivery: the room's seq
	sent time.Time // delivery: the send time at the head of its text; zero if none
	code string    // refusal: the server's error code
}

type eventKind int

const (
	delivery eventKind = iota
	ack
	refusal
	ping // Centrifugo's empty command, answered with one
)

func dialectOf(name string) (dialect, error) {
	switch name {
	case "", "switchboard":
		return switchboard{}, nil
	case "centrifugo":
		return centrifugo{}, nil
	}
	return nil, fmt.Errorf("-protocol %q: want switchboard or centrifugo", name)
}

type switchboard struct{}

func (switchboard) path() string           { return "/ws" }
func (switchboard) greeting(string) []byte { return nil } // the server sends welcome

func (switchboard) setup(state connState, data []byte, room string) ([]byte, bool, int64, error) {
	var f protocol.ServerFrame
	if state == awaitWelcome {
		if json.Unmarshal(data, &f) != nil || f.Op != protocol.OpWelcome {
			return nil, false, 0, fmt.Errorf("welcome: got %.200s", data)
		}
		return []byte(`{"op":"join","room":"` + room + `"}`), false, 0, nil
	}
	if json.Unmarshal(data, &f) != nil || f.Op != protocol.OpJoined {
		return nil, false, 0, fmt.Errorf("join %s: got %.200s", room, data)
	}
	return nil, true, f.Seq, nil
}

func (switchboard) send(room string, k, n int, text string) []byte {
	return []byte(`{"op":"send","room":"` + room + `","id":"` + strconv.Itoa(k) + "-" + strconv.Itoa(n) + `","text":"` + text + `"}`)
}

func (switchboard) events(data []byte, dst []event) []event {
	if seq, sent, ok := messageFrame(data); ok {
		return append(dst, event{kind: delivery, seq: seq, sent: sent})
	}
	var f protocol.ServerFrame
	if json.Unmarshal(data, &f) != nil {
		return dst
	}
	switch f.Op {
	case protocol.OpAck:
		dst = append(dst, event{kind: ack})
	case protocol.OpError:
		dst = append(dst, event{kind: refusal, code: f.Code})
	}
	return dst
}

var (
	messagePrefix = []byte(`{"op":"message",`)
	seqField      = []byte(`,"seq":`)
	textField     = []byte(`"text":"`)
)

// messageFrame reads a message frame's seq and the send time publish wrote
// at the head of its text, without a JSON decoder: the loader reads every
// delivery of the run, and the server writes these fields in this order
// (protocol.MessageFrameParts). A zero time: the text carries none.
func messageFrame(data []byte) (seq int64, sent time.Time, ok bool) {
	if !bytes.HasPrefix(data, messagePrefix) {
		return 0, time.Time{}, false
	}
	i := bytes.Index(data, seqField)
	if i < 0 {
		return 0, time.Time{}, false
	}
	rest := data[i+len(seqField):]
	seq, n := leadingInt(rest)
	if n == 0 {
		return 0, time.Time{}, false
	}
	return seq, sendTime(rest), true
}

// Centrifugo's JSON protocol (v2, Centrifugo v5 and v6): commands and
// replies carry an id, the server pushes publications with the channel's
// offset, several may share a frame one to a line, and an empty object is a
// ping to answer with one. Rooms are channels without a namespace; the
// server must allow clients to subscribe and subscribers to publish, and
// keep history for offsets (tests/bench_test.go's configuration).
type centrifugo struct{}

// Command ids: 1 connects, 2 subscribes, sends count from 3.
const centrifugoSendIDs = 3

var (
	cfConnected  = []byte(`{"id":1,"connect":`)
	cfSubscribed = []byte(`{"id":2,"subscribe":`)
	cfPush       = []byte(`{"push":{"channel":"`)
	cfOffset     = []byte(`"offset":`)
	cfPublished  = []byte(`"publish":{`)
	cfErrorCode  = []byte(`"error":{"code":`)
	cfPing       = []byte(`{}`)
)

func (centrifugo) path() string { return "/connection/websocket" }

func (centrifugo) greeting(token string) []byte {
	return []byte(`{"id":1,"connect":{"token":"` + token + `"}}`)
}

func (centrifugo) setup(state connState, data []byte, room string) ([]byte, bool, int64, error) {
	if state == awaitWelcome {
		if !bytes.HasPrefix(data, cfConnected) {
			return nil, false, 0, fmt.Errorf("connect: got %.200s", data)
		}
		return []byte(`{"id":2,"subscribe":{"channel":"` + room + `"}}`), false, 0, nil
	}
	if !bytes.HasPrefix(data, cfSubscribed) {
		return nil, false, 0, fmt.Errorf("subscribe %s: got %.200s", room, data)
	}
	var seq int64 // a channel without history yet has no offset
	if i := bytes.Index(data, cfOffset); i >= 0 {
		seq, _ = leadingInt(data[i+len(cfOffset):])
	}
	return nil, true, seq, nil
}

func (centrifugo) send(room string, _, n int, text string) []byte {
	return []byte(`{"id":` + strconv.Itoa(centrifugoSendIDs+n) + `,"publish":{"channel":"` + room + `","data":{"text":"` + text + `"}}}`)
}

func (centrifugo) events(data []byte, dst []event) []event {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		switch {
		case bytes.Equal(line, cfPing):
			dst = append(dst, event{kind: ping})
		case bytes.HasPrefix(line, cfPush):
			// The publication's offset follows its data, whose text is
			// escaped JSON: no quote inside it can begin "offset":.
			i := bytes.Index(line, cfOffset)
			if i < 0 {
				continue // a push other than a publication (join, leave)
			}
			seq, _ := leadingInt(line[i+len(cfOffset):])
			dst = append(dst, event{kind: delivery, seq: seq, sent: sendTime(line)})
		case bytes.Contains(line, cfPublished):
			dst = append(dst, event{kind: ack})
		default:
			if i := bytes.Index(line, cfErrorCode); i >= 0 {
				code, _ := leadingInt(line[i+len(cfErrorCode):])
				dst = append(dst, event{kind: refusal, code: strconv.FormatInt(code, 10)})
			}
		}
	}
	return dst
}

// sendTime is the send time publish wrote at the head of the first text in
// b, in Unix nanoseconds and followed by a space; zero if there is none.
func sendTime(b []byte) time.Time {
	j := bytes.Index(b, textField)
	if j < 0 {
		return time.Time{}
	}
	ns, n := leadingInt(b[j+len(textField):])
	if n == 0 || j+len(textField)+n >= len(b) || b[j+len(textField)+n] != ' ' {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// leadingInt reads the decimal digits at the head of b, and how many.
func leadingInt(b []byte) (v int64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n
}
