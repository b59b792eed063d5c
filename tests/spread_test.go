package tests

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/chattest"
)

// 30 clients from 30 /24s land on every instance; each lands on the same
// instance again when it reconnects from the same address.
func spreadAndStickiness(t *testing.T, s *suite) {
	if !s.loopback {
		// Spreading by source address needs the balancer to see 127.x.y.z sources.
		t.Skip("not the local target: on kind the balancer sees every client through Docker's port mapping as one address, and AWS's ALB sticks by cookie; spread by source address is proven on the local target, endpoint here " + s.Endpoint())
	}
	const n = 30
	first := make([]string, n)
	per := map[string]int{}
	for i := range n {
		c := s.dial(t, fmt.Sprintf("spread-%d", i), i)
		first[i] = c.Instance()
		per[first[i]]++
		c.Close()
	}
	for _, id := range s.instanceIDs(t) {
		if per[id] == 0 {
			t.Errorf("no client of %d landed on %s: %v", n, id, per)
		}
	}
	same := 0
	for i := range n {
		c := s.dial(t, fmt.Sprintf("spread-%d", i), i)
		if c.Instance() == first[i] {
			same++
		} else {
			t.Errorf("client %d from %v: first on %s, then on %s", i, s.source(i), first[i], c.Instance())
		}
		c.Close()
	}
	report.Logf(t, "spread: %d clients over the instances %v; %d of %d reconnects landed on the same instance", n, per, same, n)
}

// Members of one room on every instance all get every message, in order.
func fanOutAcrossInstances(t *testing.T, s *suite) {
	const n, each = 30, 20
	room := chattest.Room()
	members := s.members(t, "fan", room, 0, n)
	senders := s.onEveryInstance(t, "fan-sender", 40)
	for _, c := range senders {
		chattest.Join(t, c, room)
	}
	per := map[string]int{}
	for _, c := range members {
		per[c.Instance()]++
	}
	for i := range each {
		for j, c := range senders {
			chattest.Send(t, c, room, fmt.Sprintf("m%d from sender %d", i, j))
		}
	}
	total := int64(each * len(senders))
	for i, c := range append(members, senders...) {
		if got := chattest.Seqs(chattest.Receive(t, c, int(total), 30*time.Second)); !slices.Equal(got, chattest.UpTo(1, total)) {
			t.Fatalf("member %d on %s got %v, want 1..%d in order", i, c.Instance(), got, total)
		}
	}
	report.Logf(t, "fan-out: %d messages from %d instances to %d members %v: %d deliveries, all in seq order", total, len(senders), n+len(senders), per, int(total)*(n+len(senders)))
}
