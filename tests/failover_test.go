package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
)

// SIGKILL of one instance under continuous sending: its clients reconnect
// through the load balancer to a survivor and resume; every acked message
// reaches every client exactly once.
func killUnderLoad(t *testing.T, s *suite) {
	room := chattest.Room()
	members := s.members(t, "kill", room, 400, 30)
	byInstance := map[string][]*client.Client{}
	for _, c := range members {
		byInstance[c.Instance()] = append(byInstance[c.Instance()], c)
	}
	victim := ""
	for id, cs := range byInstance {
		if victim == "" || len(cs) > len(byInstance[victim]) {
			victim = id
		}
	}
	// Two senders per instance, the victim's included: their unacked sends
	// are resent after the reconnect and must be deduped.
	var senders []*client.Client
	for _, cs := range byInstance {
		senders = append(senders, cs[:min(2, len(cs))]...)
	}
	ld := startLoad(room, senders, 50*time.Millisecond, 0)
	time.Sleep(time.Second) // load before the kill
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	killed := time.Now()
	if err := s.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Start(ctx, victim); err != nil {
			t.Errorf("bring %s back: %v", victim, err)
		}
	}()
	orphans := byInstance[victim]
	until(t, "the victim's clients reconnect to survivors", time.Minute, func() error {
		for _, c := range orphans {
			if st := c.Stats(); st.Connects < 2 || c.Instance() == victim {
				return errorf("a client of %s has not reconnected (connects %d, on %s)", victim, st.Connects, c.Instance())
			}
		}
		return nil
	})
	reconnected := time.Since(killed)
	time.Sleep(time.Second) // load after the reconnects
	acked, failed := ld.Stop()
	if len(failed) > 0 {
		t.Errorf("sends not acked within 30s: %v", failed)
	}
	deliveries := everyAckedOnce(t, members, acked)
	var times []time.Duration
	dups := 0
	for _, c := range members {
		st := c.Stats()
		dups += st.Duplicates
		if st.Connects > 1 {
			times = append(times, st.LastConnect.Sub(st.LastDisconnect))
		}
	}
	report.Logf(t, "kill %s (%d of %d clients): all back within %s; reconnect %s; %d acked, %d deliveries checked, lost 0, duplicates after dedupe 0 (dropped by the client: %d)",
		victim, len(orphans), len(members), reconnected.Round(time.Millisecond), percentiles(times), len(acked), deliveries, dups)
}

// Rolling restart (SIGTERM each instance in turn, wait ready, next) under
// continuous sending from 50 clients: nothing acked is lost or duplicated and
// every client is connected at the end.
func rollingRestart(t *testing.T, s *suite) {
	room := chattest.Room()
	members := s.members(t, "roll", room, 500, 50)
	ld := startLoad(room, members, 500*time.Millisecond, 0)
	time.Sleep(time.Second) // load before the first restart
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var drains []time.Duration
	for _, id := range s.instanceIDs(t) {
		drain, err := s.Restart(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		drains = append(drains, drain)
	}
	time.Sleep(time.Second) // load after the last restart
	acked, failed := ld.Stop()
	if len(failed) > 0 {
		t.Errorf("sends not acked within 30s: %v", failed)
	}
	// Every client is connected at the end: its last send is acked.
	for i, c := range members {
		id := fmt.Sprintf("last-%d", i)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		seq, err := c.SendID(ctx, room, id, "still here")
		cancel()
		if err != nil {
			t.Fatalf("client %d is not connected at the end: %v", i, err)
		}
		acked[id] = seq
	}
	deliveries := everyAckedOnce(t, members, acked)
	var times []time.Duration
	reconnects, dups := 0, 0
	for _, c := range members {
		st := c.Stats()
		reconnects += st.Connects - 1
		dups += st.Duplicates
		if st.Connects > 1 {
			times = append(times, st.LastConnect.Sub(st.LastDisconnect))
		}
	}
	report.Logf(t, "rolling restart of %d instances under %d senders: drains %v; %d reconnects, reconnect %s; %d acked, %d deliveries checked, lost 0, duplicates 0 (dropped by the client: %d); all %d clients connected at the end",
		len(drains), len(members), drains, reconnects, percentiles(times), len(acked), deliveries, dups, len(members))
}
