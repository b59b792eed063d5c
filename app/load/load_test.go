package load

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

func TestHistogramQuantilesAreWithinOnePointOnePercent(t *testing.T) {
	h := NewHistogram()
	for us := 1; us <= 100_000; us++ {
		h.Record(time.Duration(us) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := time.Duration(q*100_000) * time.Microsecond
		got := h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.011 || diff > 0.011 {
			t.Errorf("p%v = %s, want %s ± 1.1%%", q*100, got, want)
		}
	}
	if time.Duration(h.Max) != 100*time.Millisecond || h.Quantile(1) != 100*time.Millisecond {
		t.Errorf("max %s, p100 %s: want 100ms", time.Duration(h.Max), h.Quantile(1))
	}
}

func TestMergedReportsCountLossesAndDuplicates(t *testing.T) {
	a, b := newReport(), newReport()
	// Room r reached seq 10. In a, two members saw up to 10 and 8, one with a
	// 1-message gap; in b, one member saw up to 10 and a duplicate.
	a.Rooms["r"] = roomState{Members: 2, SumLast: 18, Max: 10}
	a.Gaps = 1
	b.Rooms["r"] = roomState{Members: 1, SumLast: 10, Max: 10}
	b.Duplicated = 1
	a.Latency.Record(time.Millisecond)
	b.Latency.Record(3 * time.Millisecond)
	// Workers hand their reports over as JSON, which leaves empty maps out.
	var back Report
	if data, err := json.Marshal(b); err != nil || json.Unmarshal(data, &back) != nil {
		t.Fatalf("round trip: %v", err)
	}
	a.Merge(&back)
	if a.Lost() != 3 || a.Duplicated != 1 {
		t.Errorf("lost %d dup %d, want 3 (2 missed at the tail, 1 gap) and 1", a.Lost(), a.Duplicated)
	}
	if a.Latency.Total != 2 || a.Latency.Quantile(1) != 3*time.Millisecond {
		t.Errorf("merged latency: %d samples, max %s", a.Latency.Total, a.Latency.Quantile(1))
	}
}

// TestEachDialectReadsWhatItsServerWrites: Switchboard's frames as the
// protocol package writes them, and Centrifugo's as Centrifugo v6.9.1 wrote
// them to this tool's commands (several replies may share a frame, a line
// each).
func TestEachDialectReadsWhatItsServerWrites(t *testing.T) {
	const stamp = "1795437083123456789"
	sent := time.Unix(0, 1795437083123456789)
	cfPub := `{"push":{"channel":"room-1","pub":{"data":{"text":"` + stamp + ` xx"},"info":{"user":"alice","client":"64dd"},"offset":4711,"epoch":"dsgQ"}}}`
	for _, tc := range []struct {
		name string
		d    dialect
		data string
		want []event
	}{
		{"switchboard message", switchboard{}, string(protocol.Message{Room: "r", Seq: 4711, User: "u", Text: stamp + " xx", ID: "1-2", TS: time.Now()}.Frame()),
			[]event{{kind: delivery, seq: 4711, sent: sent}}},
		{"switchboard message without a send time", switchboard{}, string(protocol.Message{Room: "r", Seq: 7, User: "u", Text: "hello there"}.Frame()),
			[]event{{kind: delivery, seq: 7}}},
		{"switchboard ack", switchboard{}, string(protocol.Ack("r", "1-2", 4711)), []event{{kind: ack}}},
		{"switchboard refusal", switchboard{}, string(protocol.ErrorFrame(protocol.Errorf(protocol.CodeRateLimited, "slow down"))),
			[]event{{kind: refusal, code: protocol.CodeRateLimited}}},
		{"centrifugo publication", centrifugo{}, cfPub, []event{{kind: delivery, seq: 4711, sent: sent}}},
		{"centrifugo publish reply", centrifugo{}, `{"id":5,"publish":{}}`, []event{{kind: ack}}},
		{"centrifugo refusal", centrifugo{}, `{"id":4,"error":{"code":103,"message":"permission denied"}}`, []event{{kind: refusal, code: "103"}}},
		{"centrifugo ping", centrifugo{}, `{}`, []event{{kind: ping}}},
		{"centrifugo join push: no publication", centrifugo{}, `{"push":{"channel":"room-1","join":{"info":{"user":"bob","client":"9f2a"}}}}`, nil},
		{"centrifugo replies sharing a frame", centrifugo{}, `{"id":6,"publish":{}}` + "\n" + cfPub + "\n{}",
			[]event{{kind: ack}, {kind: delivery, seq: 4711, sent: sent}, {kind: ping}}},
	} {
		got := tc.d.events([]byte(tc.data), nil)
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i].kind != tc.want[i].kind || got[i].seq != tc.want[i].seq || got[i].code != tc.want[i].code || !got[i].sent.Equal(tc.want[i].sent) {
				t.Errorf("%s: event %d is %+v, want %+v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

// TestEachDialectOpensAMember: the greeting's answer leads to the join, the
// join's answer gives the room's seq, and anything else fails the member.
func TestEachDialectOpensAMember(t *testing.T) {
	for _, tc := range []struct {
		name            string
		d               dialect
		welcome, joined string
		wantJoin        string
		wantSeq         int64
	}{
		{"switchboard", switchboard{}, `{"op":"welcome","user":"load-1"}`, `{"op":"joined","room":"r-1","seq":41}`, `{"op":"join","room":"r-1"}`, 41},
		{"centrifugo", centrifugo{}, `{"id":1,"connect":{"client":"64dd","version":"0.0.0 OSS","ping":25,"pong":true}}`,
			`{"id":2,"subscribe":{"recoverable":true,"epoch":"dsgQ","offset":41,"positioned":true}}`, `{"id":2,"subscribe":{"channel":"r-1"}}`, 41},
		{"centrifugo, a channel without history yet", centrifugo{}, `{"id":1,"connect":{"client":"64dd"}}`,
			`{"id":2,"subscribe":{"recoverable":true,"epoch":"dsgQ","positioned":true}}`, `{"id":2,"subscribe":{"channel":"r-1"}}`, 0},
	} {
		reply, joined, _, err := tc.d.setup(awaitWelcome, []byte(tc.welcome), "r-1")
		if err != nil || joined || string(reply) != tc.wantJoin {
			t.Errorf("%s: the greeting's answer gave %s, joined %v, %v; want %s", tc.name, reply, joined, err, tc.wantJoin)
		}
		reply, joined, seq, err := tc.d.setup(awaitJoined, []byte(tc.joined), "r-1")
		if err != nil || !joined || seq != tc.wantSeq || reply != nil {
			t.Errorf("%s: the join's answer gave joined %v at seq %d, reply %s, %v; want seq %d", tc.name, joined, seq, reply, err, tc.wantSeq)
		}
		refused := `{"op":"error","code":"unauthorized"}`
		if tc.d == (centrifugo{}) {
			refused = `{"id":1,"error":{"code":109,"message":"token expired"}}`
		}
		if _, _, _, err := tc.d.setup(awaitWelcome, []byte(refused), "r-1"); err == nil || !strings.Contains(err.Error(), refused) {
			t.Errorf("%s: a refused greeting gave %v, want an error quoting it", tc.name, err)
		}
	}
}

func TestBadOptionsAreRefusedByFlag(t *testing.T) {
	good := Options{Endpoint: "http://127.0.0.1:8080", Token: "t", Conns: 10, Rooms: 2, Publishers: 2, Rate: 10, Size: 64, Duration: time.Second, Of: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
	for _, tc := range []struct {
		want   string
		change func(*Options)
	}{
		{"-endpoint", func(o *Options) { o.Endpoint = "ftp://x" }},
		{"-protocol", func(o *Options) { o.Protocol = "mqtt" }},
		{"-token or -secret", func(o *Options) { o.Token = "" }},
		{"-rooms", func(o *Options) { o.Rooms = 11 }},
		{"-publishers", func(o *Options) { o.Publishers = 11 }},
		{"-rate", func(o *Options) { o.Rate = 0 }},
		{"-size", func(o *Options) { o.Size = 8 }},
		{"-spread", func(o *Options) { o.Endpoint, o.Spread = "https://chat.example.com", true }},
	} {
		o := good
		tc.change(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v", tc.want, err)
		}
	}
}

func TestSourcesSpreadOverDistinctSlash24s(t *testing.T) {
	seen := map[string]bool{}
	for k := range 45_000 {
		ip := source(k).To4()
		seen[string(ip[:3])] = true
	}
	if len(seen) != 45_000 {
		t.Errorf("45,000 connections from %d /24s, want one each", len(seen))
	}
}

// Whole passes only a run that did everything asked, each shortfall named.
func TestWholeNamesWhatARunFellShortOf(t *testing.T) {
	whole := func() *Report {
		r := newReport()
		r.Connect.Open, r.Sent, r.Acked, r.Deliveries = 2, 1, 1, 2
		r.Rooms["a"] = roomState{Members: 2, SumLast: 2, Max: 1}
		r.Latency.Total = 2
		return r
	}
	for _, tc := range []struct {
		name  string
		spoil func(r *Report)
		want  string
	}{
		{"whole", func(*Report) {}, ""},
		{"a connection not open", func(r *Report) { r.Connect.Open = 1 }, "open 1"},
		{"a send not acked", func(r *Report) { r.Acked = 0 }, "acked 0"},
		{"a member stopped short", func(r *Report) { r.Rooms["a"] = roomState{Members: 2, SumLast: 1, Max: 1} }, "1 lost"},
		{"a delivery twice", func(r *Report) { r.Duplicated = 1 }, "1 duplicated"},
		{"a delivery not timed", func(r *Report) { r.Latency.Total = 1 }, "(1 with a latency)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := whole()
			tc.spoil(r)
			err := r.Whole(2, 1, 2)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Whole: %v, want %q", err, tc.want)
			}
		})
	}
}
