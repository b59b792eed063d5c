package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeClientAcceptsTheDocumentedFrames(t *testing.T) {
	since := int64(41)
	cases := []struct {
		in   string
		want ClientFrame
	}{
		{`{"op":"join","room":"lobby"}`, ClientFrame{Op: OpJoin, Room: "lobby"}},
		{`{"op":"join","room":"lobby","since":41}`, ClientFrame{Op: OpJoin, Room: "lobby", Since: &since}},
		{`{"op":"join","room":"lobby","since":41,"epoch":"k3j9x2ab"}`, ClientFrame{Op: OpJoin, Room: "lobby", Since: &since, Epoch: "k3j9x2ab"}},
		{`{"op":"leave","room":"lobby"}`, ClientFrame{Op: OpLeave, Room: "lobby"}},
		{`{"op":"send","room":"lobby","text":"hi","id":"c-7"}`, ClientFrame{Op: OpSend, Room: "lobby", Text: "hi", ID: "c-7"}},
		{`{"op":"send","room":"a.b_c-D9","text":"no id"}`, ClientFrame{Op: OpSend, Room: "a.b_c-D9", Text: "no id"}},
	}
	for _, c := range cases {
		got, err := DecodeClient([]byte(c.in))
		if err != nil {
			t.Errorf("DecodeClient(%s): %v", c.in, err)
			continue
		}
		if got.Op != c.want.Op || got.Room != c.want.Room || got.Text != c.want.Text || got.ID != c.want.ID || got.Epoch != c.want.Epoch ||
			(got.Since == nil) != (c.want.Since == nil) || (got.Since != nil && *got.Since != *c.want.Since) {
			t.Errorf("DecodeClient(%s) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestDecodeClientRefusesBadFramesWithBadRequest(t *testing.T) {
	cases := map[string]struct{ in, ref string }{
		"not json":              {in: `hello`},
		"two objects":           {in: `{"op":"leave","room":"a"}{"op":"leave","room":"a"}`},
		"array":                 {in: `[1,2]`},
		"missing op":            {in: `{"room":"lobby"}`},
		"unknown op":            {in: `{"op":"shout","room":"lobby"}`},
		"unknown field":         {in: `{"op":"join","room":"lobby","x":1}`},
		"empty room":            {in: `{"op":"join","room":""}`},
		"room with space":       {in: `{"op":"join","room":"a b"}`},
		"room too long":         {in: `{"op":"join","room":"` + strings.Repeat("r", 65) + `"}`},
		"negative since":        {in: `{"op":"join","room":"lobby","since":-1}`},
		"since on send":         {in: `{"op":"send","room":"lobby","text":"x","since":1,"id":"s1"}`, ref: "s1"},
		"empty text":            {in: `{"op":"send","room":"lobby","text":"","id":"c-1"}`, ref: "c-1"},
		"NUL in text":           {in: `{"op":"send","room":"lobby","text":"a\u0000b","id":"c-2"}`, ref: "c-2"},
		"NUL in id":             {in: `{"op":"send","room":"lobby","text":"a","id":"c\u0000"}`},
		"invalid UTF-8 in text": {in: "{\"op\":\"send\",\"room\":\"lobby\",\"text\":\"a\xff\xfeb\",\"id\":\"c-3\"}"},
		"invalid UTF-8 in id":   {in: "{\"op\":\"send\",\"room\":\"lobby\",\"text\":\"a\",\"id\":\"c\xc0\"}"},
		"text on join":          {in: `{"op":"join","room":"lobby","text":"x"}`},
		"id too long":           {in: `{"op":"send","room":"lobby","text":"x","id":"` + strings.Repeat("i", MaxIDLen+1) + `"}`},
		"seq of wrong type":     {in: `{"op":"join","room":"lobby","since":"7"}`},
		"epoch on send":         {in: `{"op":"send","room":"lobby","text":"x","epoch":"e","id":"s2"}`, ref: "s2"},
		"epoch too long":        {in: `{"op":"join","room":"lobby","since":1,"epoch":"` + strings.Repeat("e", MaxEpochLen+1) + `"}`},
	}
	for name, c := range cases {
		_, err := DecodeClient([]byte(c.in))
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
			t.Errorf("%s: DecodeClient(%.80s) error = %v, want a bad_request refusal", name, c.in, err)
			continue
		}
		if c.ref != "" && pe.Ref != c.ref {
			t.Errorf("%s: ref = %q, want %q", name, pe.Ref, c.ref)
		}
	}
}

func TestMessageFrameRoundTripsThroughJSON(t *testing.T) {
	ts := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	m := Message{Room: "lobby", Seq: 58, User: `al"ice`, Text: "hi <b>\n", ID: "c-7", TS: ts}
	frame := m.Frame()
	var f ServerFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		t.Fatalf("frame %s is not JSON: %v", frame, err)
	}
	if f.Op != OpMessage || f.TS != "2026-11-23T10:00:00.123Z" {
		t.Fatalf("frame %s: op %q ts %q", frame, f.Op, f.TS)
	}
	got, err := ParseMessage(string(frame))
	if err != nil {
		t.Fatal(err)
	}
	want := m
	want.TS = ts.Truncate(time.Millisecond)
	if got != want {
		t.Fatalf("ParseMessage = %+v, want %+v", got, want)
	}
}

func TestJoinedCarriesSeqZeroAndAnEmptyEpoch(t *testing.T) {
	var f map[string]any
	if err := json.Unmarshal(Joined("lobby", Position{}), &f); err != nil {
		t.Fatal(err)
	}
	if f["seq"] != float64(0) || f["op"] != "joined" || f["epoch"] != "" {
		t.Fatalf("joined frame = %v, want op joined with seq 0 and epoch \"\"", f)
	}
	var sf ServerFrame
	if err := json.Unmarshal(Joined("lobby", Position{Seq: 57, Epoch: "k3j9x2ab"}), &sf); err != nil || sf.Seq != 57 || sf.Epoch != "k3j9x2ab" {
		t.Fatalf("joined frame decodes to %+v (%v), want seq 57 epoch k3j9x2ab", sf, err)
	}
}

func TestHistoryGapNamesTheRoomAndTheInclusiveRange(t *testing.T) {
	d := Gap("lobby", 42, 977)
	var f ServerFrame
	if err := json.Unmarshal(d.Frame, &f); err != nil {
		t.Fatal(err)
	}
	if f.Op != OpError || f.Code != CodeHistoryGap || f.Room != "lobby" || f.From != 42 || f.To != 977 || f.Message == "" {
		t.Fatalf("history_gap frame = %+v, want error history_gap lobby 42..977 with a message", f)
	}
	if d.IsMessage() || d.Seq != 977 {
		t.Fatalf("gap delivery %+v: want Seq 977 (its end) and not a message", d)
	}
}

// FuzzDecodeClient: no input crashes the decoder, and whatever it accepts
// satisfies the frame rules.
func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{
		`{"op":"join","room":"lobby","since":41}`,
		`{"op":"send","room":"lobby","text":"hi","id":"c-7"}`,
		`{"op":"leave","room":"x"}`, `{}`, `[]`, `null`, `{"op":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeClient(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeBadRequest {
				t.Fatalf("refusal %v is not a bad_request *Error", err)
			}
			return
		}
		if !ValidRoom(fr.Room) || (fr.Op == OpSend && fr.Text == "") || len(fr.ID) > MaxIDLen {
			t.Fatalf("accepted an invalid frame %+v", fr)
		}
	})
}

func TestAckIsWhatTheEncoderWrites(t *testing.T) {
	for _, tc := range []struct {
		room, id string
		seq      int64
	}{
		{"lobby", "c-1", 1},
		{"lobby", "", 42},
		{`quo"te<&>`, "é\\n\u2028", 1 << 62},
	} {
		want := Encode(ServerFrame{Op: OpAck, Room: tc.room, ID: tc.id, Seq: tc.seq})
		if got := Ack(tc.room, tc.id, tc.seq); string(got) != string(want) {
			t.Errorf("Ack(%q, %q, %d) = %s, want %s", tc.room, tc.id, tc.seq, got, want)
		}
	}
}

// FuzzAppendQuoteIsWhatTheEncoderWrites: the frames are built without
// encoding/json, so every string must come out as json.Marshal quotes it.
func FuzzAppendQuoteIsWhatTheEncoderWrites(f *testing.F) {
	for _, s := range []string{
		"", "lobby", `quo"te\`, "<&>", "\b\f\n\r\t\x00\x1f\x7f", "é€😀",
		"\u2028\u2029", "\xff", "a\xc3", "\xed\xa0\x80", "\uFFFD",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendQuote([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("appendQuote(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

// FuzzPlainAgreesWithTheDecoder: every client frame and message frame the
// plain parsers take, the JSON decoder takes too, with the same fields; the
// rest goes to the decoder.
func FuzzPlainAgreesWithTheDecoder(f *testing.F) {
	for _, s := range []string{
		`{"op":"join","room":"lobby","since":41,"epoch":"k3j9x2ab"}`,
		` { "op" : "send" , "room" : "lobby" , "text" : "héllo 😀" , "id" : "c-7" } `,
		`{"op":"leave","room":"x"}`, `{}`, `{"op":"join","room":"a","since":0}`,
		`{"op":"join","room":"a","since":01}`, `{"op":"join","room":"a","since":1.5}`,
		`{"op":"join","room":"a","since":1e3}`, `{"op":"join","room":"a","since":-1}`,
		`{"op":"join","room":"a","since":9223372036854775807}`, `{"op":"join","room":"a","since":null}`,
		`{"op":"join","room":"a","since":"7"}`, `{"op":"join","room":7}`,
		`{"op":"send","room":"a","text":"a\"b"}`, `{"op":"send","room":"a","text":"\u00e9"}`,
		"{\"op\":\"send\",\"room\":\"a\",\"text\":\"\xff\"}", "{\"op\":\"send\",\"room\":\"a\",\"text\":\"\t\"}",
		`{"OP":"join","room":"a"}`, `{"op":"join","op":"leave","room":"a"}`, `{"op":"join","room":"a",}`,
		`{"op":"join","room":"a"}}`, `{"op":"join","room":"a"} x`, `{"op":"join","room":"a"`, `{"op":"join" "room":"a"}`,
		string(Message{Room: "lobby", Seq: 42, User: "alice", Text: "hi <b>", ID: "c-1", TS: time.Now()}.Frame()),
		string(Message{Room: "lobby", Seq: 1, User: "bob", Text: "x", TS: time.Now()}.Frame()),
		`{"op":"message","room":"a","seq":1,"user":"u","text":"t","ts":"yesterday"}`,
		`{"op":"ack","room":"a","seq":1,"ts":"2026-12-01T00:00:00.000Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if plain, ok := decodePlain(data); ok {
			ref, err := decodeJSON(data)
			if err != nil {
				t.Fatalf("decodePlain took %q, which the decoder refuses: %v", data, err)
			}
			if plain.Op != ref.Op || plain.Room != ref.Room || plain.Epoch != ref.Epoch || plain.Text != ref.Text || plain.ID != ref.ID ||
				(plain.Since == nil) != (ref.Since == nil) || (plain.Since != nil && *plain.Since != *ref.Since) {
				t.Fatalf("decodePlain(%q) = %+v, the decoder %+v", data, plain, ref)
			}
		}
		if plain, ok := parsePlainMessage(string(data)); ok {
			ref, err := parseMessageJSON(string(data))
			if err != nil {
				t.Fatalf("parsePlainMessage took %q, which the decoder refuses: %v", data, err)
			}
			if plain != ref {
				t.Fatalf("parsePlainMessage(%q) = %+v, the decoder %+v", data, plain, ref)
			}
		}
	})
}

func TestThePlainParsersTakeTheUsualFrames(t *testing.T) {
	for _, in := range []string{
		`{"op":"join","room":"lobby","since":41,"epoch":"k3j9x2ab"}`,
		`{"op":"send","room":"lobby","text":"héllo 😀","id":"c-7"}`,
		`{"op":"leave","room":"lobby"}`,
	} {
		data := []byte(in)
		if _, ok := decodePlain(data); !ok {
			t.Errorf("decodePlain(%s) left it to the decoder", in)
		}
		// One allocation for the strings, one for since.
		if n := testing.AllocsPerRun(100, func() { DecodeClient(data) }); n > 2 {
			t.Errorf("DecodeClient(%s) made %.0f allocations, want at most 2", in, n)
		}
	}
	frame := Message{Room: "lobby", Seq: 42, User: "alice", Text: "héllo 😀", ID: "c-1", TS: time.Now()}.Frame()
	if _, ok := parsePlainMessage(string(frame)); !ok {
		t.Errorf("parsePlainMessage(%s) left it to the decoder", frame)
	}
	// The persist writer parses each message read back from Redis: its
	// strings are the frame's.
	s := string(frame)
	if n := testing.AllocsPerRun(100, func() { ParseMessage(s) }); n > 0 {
		t.Errorf("ParseMessage(%s) made %.0f allocations, want none", frame, n)
	}
}
