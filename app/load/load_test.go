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

func TestMessageFramesAreReadWithoutJSON(t *testing.T) {
	sent := time.Unix(0, 1795437083123456789)
	frame := protocol.Message{Room: "r", Seq: 4711, User: "u", Text: "1795437083123456789 xxxx", ID: "1-2", TS: time.Now()}.Frame()
	seq, at, ok := messageFrame(frame)
	if !ok || seq != 4711 || !at.Equal(sent) {
		t.Errorf("read seq %d sent %v ok %v from %s", seq, at, ok, frame)
	}
	if _, _, ok := messageFrame(protocol.Ack("r", "1-2", 4711)); ok {
		t.Error("an ack was read as a message")
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
