package protocol

import (
	"time"
	"unicode/utf8"
)

// The frames clients send and the message frames the persist writer reads
// are parsed here without encoding/json, whose decoder allocates half a
// kilobyte and more for every frame, when they have the usual shape: an
// object of the expected keys in lower case, each once, with strings that
// need no unescaping and numbers of plain digits. Anything else (escapes,
// other spellings, null, a syntax error) goes to the JSON decoder, so the two
// never disagree on a frame taken here (FuzzPlainAgreesWithTheDecoder). All
// the strings of a frame share one allocation, or none when the frame is a
// string already (a message frame read back from Redis).

// The keys of a client frame.
const (
	keyOp = iota
	keyRoom
	keyEpoch
	keyText
	keyID
	keySince
)

var clientKeys = []string{keyOp: "op", keyRoom: "room", keyEpoch: "epoch", keyText: "text", keyID: "id", keySince: "since"}

// decodePlain reads a client frame; false leaves it to decodeJSON.
func decodePlain(data []byte) (ClientFrame, bool) {
	var at [keySince + 1][2]int
	s := string(data)
	found, num, ok := plainFields(s, clientKeys, at[:])
	if !ok || num != found&(1<<keySince) {
		return ClientFrame{}, false
	}
	str := func(k int) string { return s[at[k][0]:at[k][1]] }
	f := ClientFrame{Op: str(keyOp), Room: str(keyRoom), Epoch: str(keyEpoch), Text: str(keyText), ID: str(keyID)}
	if found&(1<<keySince) != 0 {
		n := natural(s[at[keySince][0]:at[keySince][1]]) // allocated only here
		f.Since = &n
	}
	return f, true
}

// The keys of a message frame (MessageFrameParts).
const (
	msgOp = iota
	msgRoom
	msgSeq
	msgUser
	msgText
	msgID
	msgTS
)

var messageKeys = []string{msgOp: "op", msgRoom: "room", msgSeq: "seq", msgUser: "user", msgText: "text", msgID: "id", msgTS: "ts"}

// parsePlainMessage reads a message frame; false leaves it to
// parseMessageJSON.
func parsePlainMessage(frame string) (Message, bool) {
	var at [msgTS + 1][2]int
	found, num, ok := plainFields(frame, messageKeys, at[:])
	if !ok || num != found&(1<<msgSeq) || frame[at[msgOp][0]:at[msgOp][1]] != OpMessage || found&(1<<msgTS) == 0 {
		return Message{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, frame[at[msgTS][0]:at[msgTS][1]])
	if err != nil {
		return Message{}, false
	}
	str := func(k int) string { return frame[at[k][0]:at[k][1]] }
	return Message{Room: str(msgRoom), Seq: natural(frame[at[msgSeq][0]:at[msgSeq][1]]), User: str(msgUser), Text: str(msgText), ID: str(msgID), TS: ts}, true
}

// plainFields scans data as a JSON object whose keys are among keys, each
// at most once, and whose values are strings that need no unescaping or
// natural numbers (0, or at most 18 digits without a leading zero). For each
// key found, at[k] is where its value lies in data: a string's contents or a
// number's digits. found and num have bit k set for the keys found and for
// those whose value was a number. ok is false for anything else.
func plainFields(data string, keys []string, at [][2]int) (found, num uint16, ok bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return 0, 0, false
	}
	for i = skipSpace(data, i+1); ; i = skipSpace(data, i+1) {
		lo, hi, ok := plainString(data, i)
		if !ok {
			return 0, 0, false
		}
		k := 0
		for k < len(keys) && keys[k] != data[lo:hi] {
			k++
		}
		if k == len(keys) || found&(1<<k) != 0 {
			return 0, 0, false
		}
		found |= 1 << k
		if i = skipSpace(data, hi+1); i == len(data) || data[i] != ':' {
			return 0, 0, false
		}
		i = skipSpace(data, i+1)
		if lo, hi, ok = plainString(data, i); ok {
			i = hi + 1
		} else if lo, hi, ok = plainNatural(data, i); ok {
			num |= 1 << k
			i = hi
		} else {
			return 0, 0, false
		}
		at[k] = [2]int{lo, hi}
		if i = skipSpace(data, i); i == len(data) {
			return 0, 0, false
		}
		if data[i] == '}' {
			return found, num, skipSpace(data, i+1) == len(data)
		}
		if data[i] != ',' {
			return 0, 0, false
		}
	}
}

// skipSpace returns the index of the first byte from i on that is not JSON
// whitespace.
func skipSpace(data string, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString finds the string that starts at data[i]: its contents are
// data[lo:hi], and data[hi] is the closing quote. It refuses escapes,
// control characters and invalid UTF-8, which the decoder would rewrite.
func plainString(data string, i int) (lo, hi int, ok bool) {
	if i == len(data) || data[i] != '"' {
		return 0, 0, false
	}
	lo = i + 1
	for hi = lo; hi < len(data); hi++ {
		switch c := data[hi]; {
		case c == '"':
			return lo, hi, utf8.ValidString(data[lo:hi])
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// plainNatural finds the number that starts at data[i] when it is 0 or at
// most 18 digits without a leading zero: its digits are data[i:end].
func plainNatural(data string, i int) (lo, end int, ok bool) {
	for end = i; end < len(data) && '0' <= data[end] && data[end] <= '9'; end++ {
	}
	digits := end - i
	if digits == 0 || digits > 18 || (digits > 1 && data[i] == '0') {
		return 0, 0, false
	}
	if end < len(data) && (data[end] == '.' || data[end] == 'e' || data[end] == 'E') {
		return 0, 0, false
	}
	return i, end, true
}

// natural is the value of digits that plainNatural found.
func natural(digits string) int64 {
	var n int64
	for _, d := range digits {
		n = n*10 + int64(d-'0')
	}
	return n
}
