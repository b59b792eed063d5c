package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
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
	// encoding/json would take invalid bytes as U+FFFD and the message would
	// be stored altered; a text frame must be UTF-8 (RFC 6455, section 8.1).
	if !utf8.Valid(data) {
		return f, Errorf(CodeBadRequest, "frame is not valid UTF-8")
	}
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

// ParseMessage decodes a message frame back into a Message, whose strings
// share frame's.
func ParseMessage(frame string) (Message, error) {
	if m, ok := parsePlainMessage(frame); ok {
		return m, nil
	}
	return parseMessageJSON(frame)
}

// parseMessageJSON is the reference parser.
func parseMessageJSON(frame string) (Message, error) {
	var f ServerFrame
	if err := json.Unmarshal([]byte(frame), &f); err != nil {
		return Message{}, fmt.Errorf("decode message frame: %w", err)
	}
	if f.Op != OpMessage {
		return Message{}, fmt.Errorf("decode message frame: op %q is not %q", f.Op, OpMessage)
	}
	ts, err := time.Parse(time.RFC3339Nano, f.TS)
	if err != nil {
		return Message{}, fmt.Errorf("decode message frame ts: %w", err)
	}
	return Message{Room: f.Room, Seq: f.Seq, User: f.User, Text: f.Text, ID: f.ID, TS: ts}, nil
}
