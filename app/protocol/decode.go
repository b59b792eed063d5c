package protocol

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// DecodeClient parses and validates one client frame. A refusal is always a
// *Error with code bad_request, carrying the frame's id when it could be read.
func DecodeClient(data []byte) (ClientFrame, error) {
	f, ok := decodePlain(data)
	if !ok {
		var err *Error
		if f, err = decodeJSON(data); err != nil {
			return f, err
		}
	}
	if err := f.validate(); err != nil {
		err.Ref = f.ID
		return f, err
	}
	return f, nil
}

// decodeJSON is the reference decoder: strict about unknown fields.
func decodeJSON(data []byte) (ClientFrame, *Error) {
	var f ClientFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, Errorf(CodeBadRequest, "frame is not valid JSON of the expected shape: %v", err)
	}
	if dec.More() {
		return f, Errorf(CodeBadRequest, "one JSON object per frame")
	}
	return f, nil
}

// The keys of a client frame as decodePlain knows them.
const (
	keyOp = iota
	keyRoom
	keyEpoch
	keyText
	keyID
	keySince
)

var plainKeys = [...]string{keyOp: "op", keyRoom: "room", keyEpoch: "epoch", keyText: "text", keyID: "id", keySince: "since"}

// decodePlain reads the frames clients send in practice without
// encoding/json, whose decoder allocates half a kilobyte and more for every
// frame: an object of the keys in lower case, each once, with strings that
// need no unescaping and a since of plain digits. It reports false for
// anything else (escapes, other spellings, null, a syntax error) and leaves
// that to decodeJSON, so the two never disagree on a frame it takes
// (FuzzDecodePlainAgreesWithTheDecoder). All the frame's strings share one
// allocation.
func decodePlain(data []byte) (ClientFrame, bool) {
	var (
		f     ClientFrame
		vals  [keySince][2]int // where each string value lies in data
		seen  [keySince + 1]bool
		since int64
	)
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return f, false
	}
	i = skipSpace(data, i+1)
	for {
		lo, hi, ok := plainString(data, i)
		if !ok {
			return f, false
		}
		k := 0
		for k < len(plainKeys) && plainKeys[k] != string(data[lo:hi]) {
			k++
		}
		if k == len(plainKeys) || seen[k] {
			return f, false
		}
		seen[k] = true
		if i = skipSpace(data, hi+1); i == len(data) || data[i] != ':' {
			return f, false
		}
		i = skipSpace(data, i+1)
		if k == keySince {
			if since, i, ok = plainNatural(data, i); !ok {
				return f, false
			}
		} else {
			if lo, hi, ok = plainString(data, i); !ok {
				return f, false
			}
			vals[k] = [2]int{lo, hi}
			i = hi + 1
		}
		if i = skipSpace(data, i); i == len(data) {
			return f, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return f, false
		}
		i = skipSpace(data, i+1)
	}
	if skipSpace(data, i+1) != len(data) {
		return f, false
	}
	s := string(data)
	str := func(k int) string { return s[vals[k][0]:vals[k][1]] }
	f.Op, f.Room, f.Epoch, f.Text, f.ID = str(keyOp), str(keyRoom), str(keyEpoch), str(keyText), str(keyID)
	if seen[keySince] {
		n := since // allocated here only, not for every frame
		f.Since = &n
	}
	return f, true
}

// skipSpace returns the index of the first byte from i on that is not JSON
// whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString finds the string that starts at data[i]: its contents are
// data[lo:hi], and data[hi] is the closing quote. It refuses escapes,
// control characters and invalid UTF-8, which the decoder would rewrite.
func plainString(data []byte, i int) (lo, hi int, ok bool) {
	if i == len(data) || data[i] != '"' {
		return 0, 0, false
	}
	lo = i + 1
	for hi = lo; hi < len(data); hi++ {
		switch c := data[hi]; {
		case c == '"':
			return lo, hi, utf8.Valid(data[lo:hi])
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// plainNatural reads the number that starts at data[i] when it is 0 or
// digits without a leading zero that fit an int64 easily, and returns the
// index after it.
func plainNatural(data []byte, i int) (n int64, next int, ok bool) {
	for next = i; next < len(data) && '0' <= data[next] && data[next] <= '9'; next++ {
		n = n*10 + int64(data[next]-'0')
	}
	digits := next - i
	if digits == 0 || digits > 18 || (digits > 1 && data[i] == '0') {
		return 0, 0, false
	}
	if next < len(data) && (data[next] == '.' || data[next] == 'e' || data[next] == 'E') {
		return 0, 0, false
	}
	return n, next, true
}
