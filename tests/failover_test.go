package tests

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/tests/target"
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
	report.Logf(t, "kill %s (%d of %d clients): all back within %s; reconnect %s; %d acked (%d sends retried after internal), %d deliveries checked, lost 0, duplicates after dedupe 0 (dropped by the client: %d)",
		victim, len(orphans), len(members), reconnected.Round(time.Millisecond), percentiles(times), len(acked), ld.retried, deliveries, dups)
}

// A rolling update (each instance drained gracefully, the next once its
// replacement is ready) under continuous sending from 50 clients: nothing
// acked is lost or duplicated and every client is connected at the end.
func rollingRestart(t *testing.T, s *suite) {
	underPlannedDisruption(t, s, "roll", 500, func(ctx context.Context) (string, error) {
		drains, err := s.RollingUpdate(ctx)
		if drains == nil {
			return "rolling update", err
		}
		return fmt.Sprintf("rolling update, drains %v", drains), err
	})
}

// A node drain, as node maintenance does it, under the same load: the
// instances on the node are evicted under their disruption budget and their
// clients move to instances elsewhere, losing nothing acked.
func nodeDrain(t *testing.T, s *suite) {
	underPlannedDisruption(t, s, "drain", 950, func(ctx context.Context) (string, error) {
		node, err := s.DrainNode(ctx)
		return "drain of " + node, err
	})
}

// underPlannedDisruption runs disrupt while 50 clients, dialed from sources
// first.., send to one room every 500 ms, then checks that every acked
// message reached every client once, in order, and that all are connected.
func underPlannedDisruption(t *testing.T, s *suite, prefix string, first int, disrupt func(context.Context) (string, error)) {
	room := chattest.Room()
	members := s.members(t, prefix, room, first, 50)
	ld := startLoad(room, members, 500*time.Millisecond, 0)
	time.Sleep(time.Second) // load before the disruption
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	what, err := disrupt(ctx)
	took := time.Since(began)
	if errors.Is(err, target.ErrNoNodes) {
		ld.Stop()
		t.Skipf("%v: the local target runs its instances as processes on this machine; the drain runs on kind (make e2e)", err)
	}
	if err != nil {
		ld.Stop()
		t.Fatalf("%s: %v", what, err)
	}
	time.Sleep(time.Second) // load after the disruption
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
	report.Logf(t, "%s in %s under %d senders: %d reconnects, reconnect %s; %d acked, %d deliveries checked, lost 0, duplicates 0 (dropped by the client: %d); all %d clients connected at the end",
		what, took.Round(time.Millisecond), len(members), reconnects, percentiles(times), len(acked), deliveries, dups, len(members))
}
