// Package protocol holds Switchboard's wire contract: the JSON frames exchanged
// over /ws, their validation, the error codes and the close codes. The server,
// the Go client and the tests all speak through it; it imports nothing of ours.
package protocol

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Client operations.
const (
	OpJoin  = "join"
	OpLeave = "leave"
	OpSend  = "send"
)

// Server operations.
const (
	OpWelcome = "welcome"
	OpJoined  = "joined"
	OpMessage = "message"
	OpAck     = "ack"
	OpError   = "error"
)

// Error codes carried by an error frame.
const (
	CodeBadRequest  = "bad_request"
	CodeNotJoined   = "not_joined"
	CodeTooLarge    = "too_large"
	CodeRateLimited = "rate_limited"
	CodeHistoryGap  = "history_gap"
	CodeInternal    = "internal"
	// CodeForbidden refuses a join of a room the token's rooms claim does
	// not name (docs/abuse.md).
	CodeForbidden = "forbidden"
)

// Quotas a rate_limited refusal names: per user (its token's sub) or per
// client address, counted across instances. The per-connection RATE_LIMIT
// names none.
const (
	QuotaUserSends          = "user_sends"
	QuotaUserJoins          = "user_joins"
	QuotaUserRooms          = "user_rooms"
	QuotaUserResumes        = "user_resumes"
	QuotaUserHistory        = "user_history"
	QuotaAddressConnects    = "address_connects"
	QuotaUserConnections    = "user_connections"
	QuotaAddressConnections = "address_connections"
)

// Quotas lists every quota name, for metrics and tests.
var Quotas = []string{QuotaUserSends, QuotaUserJoins, QuotaUserRooms, QuotaUserResumes, QuotaUserHistory,
	QuotaAddressConnects, QuotaUserConnections, QuotaAddressConnections}

// WebSocket close codes the server uses.
const (
	CloseGoingAway    = 1001 // the instance drains
	ClosePolicy       = 1008 // the token expired
	CloseTooLarge     = 1009 // a frame exceeded MAX_MESSAGE_BYTES
	CloseInternal     = 1011 // the server failed
	CloseTryAgainLate = 1013 // overloaded: a slow consumer whose queue overflowed
)

// TimeFormat is the layout of a message's ts: UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// MaxIDLen bounds a client's message id so dedupe keys stay small.
const MaxIDLen = 128

// MaxEpochLen bounds the epoch a client echoes back on join.
const MaxEpochLen = 64

// ValidRoom reports whether name is an acceptable room name: 1 to 64 of
// [A-Za-z0-9_.-]. Every frame's room is checked, so this is a loop, not a
// regular expression.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// ClientFrame is any frame a client sends.
type ClientFrame struct {
	Op    string `json:"op"`
	Room  string `json:"room"`
	Since *int64 `json:"since,omitempty"`
	// Epoch is the room's epoch from the joined frame the client last saw:
	// a since from another epoch is only trusted up to the room's latest.
	Epoch string `json:"epoch,omitempty"`
	Text  string `json:"text,omitempty"`
	ID    string `json:"id,omitempty"`
}

// Error is a refusal the server reports to the client in an error frame.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	// Room names the room of a refused join.
	Room string `json:"room,omitempty"`
	// Quota names the quota a rate_limited refusal hit (QuotaUserSends, ...);
	// RetryAfterMS is when the client may try again.
	Quota        string `json:"quota,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a refusal with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (f ClientFrame) validate() *Error {
	switch f.Op {
	case OpJoin, OpLeave, OpSend:
	case "":
		return Errorf(CodeBadRequest, `missing "op"`)
	default:
		return Errorf(CodeBadRequest, "unknown op %q: want join, leave or send", f.Op)
	}
	if !ValidRoom(f.Room) {
		return Errorf(CodeBadRequest, "invalid room %q: want 1 to 64 of [A-Za-z0-9_.-]", f.Room)
	}
	if f.Since != nil && (f.Op != OpJoin || *f.Since < 0) {
		return Errorf(CodeBadRequest, `"since" is a non-negative seq and only goes with join`)
	}
	if f.Epoch != "" && (f.Op != OpJoin || len(f.Epoch) > MaxEpochLen) {
		return Errorf(CodeBadRequest, `"epoch" goes only with join, in at most %d bytes`, MaxEpochLen)
	}
	if len(f.ID) > MaxIDLen {
		return Errorf(CodeBadRequest, `"id" longer than %d bytes`, MaxIDLen)
	}
	if f.Op == OpSend && f.Text == "" {
		return Errorf(CodeBadRequest, `send needs a non-empty "text"`)
	}
	if strings.ContainsRune(f.Text, 0) || strings.ContainsRune(f.ID, 0) {
		// Postgres's text refuses it: accepted, the message could never
		// be stored.
		return Errorf(CodeBadRequest, `"text" and "id" cannot hold the NUL character (\u0000)`)
	}
	if f.Op != OpSend && (f.Text != "" || f.ID != "") {
		return Errorf(CodeBadRequest, `"text" and "id" only go with send`)
	}
	return nil
}

// ServerFrame is any frame the server sends; clients decode into it.
type ServerFrame struct {
	Op       string `json:"op"`
	Instance string `json:"instance,omitempty"`
	User     string `json:"user,omitempty"`
	Room     string `json:"room,omitempty"`
	Seq      int64  `json:"seq,omitempty"`
	Epoch    string `json:"epoch,omitempty"`
	Text     string `json:"text,omitempty"`
	ID       string `json:"id,omitempty"`
	TS       string `json:"ts,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
	Ref      string `json:"ref,omitempty"`
	// From and To name the missing range of a history_gap, inclusive.
	From int64 `json:"from,omitempty"`
	To   int64 `json:"to,omitempty"`
	// Quota and RetryAfterMS go with rate_limited (Error).
	Quota        string `json:"quota,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// Message is one chat message as it is stored and delivered.
type Message struct {
	Room string    `json:"room"`
	Seq  int64     `json:"seq"`
	User string    `json:"user"`
	Text string    `json:"text"`
	ID   string    `json:"id,omitempty"`
	TS   time.Time `json:"ts"`
}

// Frame encodes the message as the server's message frame.
func (m Message) Frame() []byte {
	pre, post := MessageFrameParts(m.Room, m.User, m.Text, m.ID, m.TS)
	return JoinFrameParts(pre, m.Seq, post)
}

// MessageFrameParts encodes a message frame around its seq, which is only
// known once Redis allocates it: the frame is pre + seq + post. It lets the
// allocation script finish the frame without a JSON encoder, so every
// instance forwards the same bytes to every recipient.
func MessageFrameParts(room, user, text, id string, ts time.Time) (pre, post []byte) {
	pre = appendQuote(append(make([]byte, 0, 32+len(room)), `{"op":"message","room":`...), room)
	pre = append(pre, `,"seq":`...)
	post = make([]byte, 0, 64+len(user)+len(text)+len(id))
	post = appendQuote(append(post, `,"user":`...), user)
	post = appendQuote(append(post, `,"text":`...), text)
	if id != "" {
		post = appendQuote(append(post, `,"id":`...), id)
	}
	post = append(post, `,"ts":"`...)
	post = ts.UTC().AppendFormat(post, TimeFormat)
	return pre, append(post, `"}`...)
}

// JoinFrameParts is the inverse split of MessageFrameParts.
func JoinFrameParts(pre []byte, seq int64, post []byte) []byte {
	out := make([]byte, 0, len(pre)+20+len(post))
	out = append(out, pre...)
	out = strconv.AppendInt(out, seq, 10)
	return append(out, post...)
}

// Encode marshals a server frame. ServerFrame holds only strings and ints,
// so marshalling cannot fail.
func Encode(f ServerFrame) []byte {
	b, _ := json.Marshal(f)
	return b
}

// Welcome, Joined, Ack and ErrorFrame build the server's control frames.
func Welcome(instance, user string) []byte {
	return Encode(ServerFrame{Op: OpWelcome, Instance: instance, User: user})
}

// Joined tells where the room stood at join. Seq 0 and an empty epoch (a
// room never written to) must still be on the wire.
func Joined(room string, at Position) []byte {
	b := appendQuote([]byte(`{"op":"joined","room":`), room)
	b = strconv.AppendInt(append(b, `,"seq":`...), at.Seq, 10)
	return append(appendQuote(append(b, `,"epoch":`...), at.Epoch), '}')
}

// HistoryGap announces that the room's messages from..to (inclusive) cannot
// be delivered: the client may fetch them from the history endpoint, and
// what that does not hold is lost.
func HistoryGap(room string, from, to int64) []byte {
	return Encode(ServerFrame{Op: OpError, Code: CodeHistoryGap, Room: room, From: from, To: to,
		Message: fmt.Sprintf("messages %d to %d of room %s cannot be delivered here; fetch them from GET /rooms/%s/messages", from, to, room, room)})
}

// Ack is built without the JSON encoder, as Encode would write it: one is
// sent for every message.
func Ack(room, id string, seq int64) []byte {
	b := appendQuote(append(make([]byte, 0, 48+len(room)+len(id)), `{"op":"ack","room":`...), room)
	b = strconv.AppendInt(append(b, `,"seq":`...), seq, 10)
	if id != "" {
		b = appendQuote(append(b, `,"id":`...), id)
	}
	return append(b, '}')
}

func ErrorFrame(e *Error) []byte {
	return Encode(ServerFrame{Op: OpError, Code: e.Code, Message: e.Message, Ref: e.Ref, Room: e.Room, Quota: e.Quota, RetryAfterMS: e.RetryAfterMS})
}

// appendQuote appends s as a JSON string, byte for byte as encoding/json
// writes it: <, > and & escaped, U+2028 and U+2029 escaped, invalid UTF-8
// replaced by U+FFFD. Every message frame and ack quotes three or four
// strings, and json.Marshal allocates for each.
func appendQuote(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
