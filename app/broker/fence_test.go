package broker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// switchProxy forwards to one Redis at a time and cuts every connection
// when its target changes: what a client behind a Sentinel-fed address (or
// a DNS name) sees on a failover.
type switchProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
}

func startSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.to("") })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

// to points the proxy at target and cuts the connections to the old one.
func (p *switchProxy) to(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *switchProxy) URL() string { return "redis://" + p.ln.Addr().String() + "/0" }

// A primary that was replaced and comes back as primary with its old data
// and its old replication id (a quick second failover before the sentinels
// demoted it, a split brain) must not count a room on from its stale state:
// seqs would go back below those handed out meanwhile. The first send on it
// fences it (a number from Postgres above every earlier fence), and every
// room reseeds above what was reserved meanwhile. A broker's first primary
// is taken as it is: a restart of the instance alone reseeds nothing.
func TestAStalePrimaryBackAsPrimaryIsFencedAndItsRoomsReseed(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	_, st := startStore(t)
	proxy := startSwitchProxy(t, a.Addr())
	ctx := context.Background()
	s := newSender(t, connect(t, proxy.URL(), broker.Options{Ledger: st}), "fenced")
	var seqs []int64
	send := func() {
		seqs = append(seqs, s.send().Seq)
	}
	send()
	send()
	proxy.to(b.Addr()) // a failover to a primary without the room
	send()
	proxy.to(a.Addr()) // the old primary back, unchanged
	send()
	send()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs %v go back", seqs)
		}
	}
	if fence, err := a.client().Get(ctx, "chat:fence").Int64(); err != nil || fence < 2 {
		t.Errorf("the stale primary's fence %d, %v: want the second one", fence, err)
	}
	// Another instance starting now takes the fenced primary as it is.
	other := newSender(t, connect(t, proxy.URL(), broker.Options{Ledger: st}), "fenced")
	other.n = 100
	if got := other.send().Seq; got != seqs[len(seqs)-1]+1 {
		t.Errorf("a new broker's first send got seq %d, want %d: no reseed", got, seqs[len(seqs)-1]+1)
	}
}

// Until a primary is first fenced, a room is marked with the replication id
// alone, as before fences existed: instances of the previous version, which
// compare the replication id alone, agree with this one during a rollout
// instead of reseeding each other's rooms.
func TestARoomOnANeverFencedPrimaryIsMarkedAsBefore(t *testing.T) {
	r := startRedis(t)
	newSender(t, connect(t, r.URL(), broker.Options{}), "marked").send()
	ctx := context.Background()
	info, err := r.client().Info(ctx, "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(info, "master_replid:")
	replid, _, _ := strings.Cut(rest, "\r\n")
	if got, err := r.client().Get(ctx, "chat:{marked}:replid").Result(); err != nil || got != replid {
		t.Errorf("room marked %q, %v: want the replication id %q alone", got, err, replid)
	}
}

// fencesDown is a ledger whose fences fail while down is set: Postgres out.
type fencesDown struct {
	broker.Ledger
	down atomic.Bool
}

func (l *fencesDown) Fence(ctx context.Context) (int64, error) {
	if l.down.Load() {
		return 0, errors.New("postgres is down")
	}
	return l.Ledger.Fence(ctx)
}

// A stale primary that cannot be fenced (Postgres is down) refuses every
// send until it is: a refusal must not leave the instance taking it for the
// primary it last wrote to, or the next send counts a room on from the
// stale state, below the seqs handed out meanwhile (chaos seed 5, docs/log.md
// 2026-12-07).
func TestAStalePrimaryRefusesEverySendUntilItIsFenced(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	_, st := startStore(t)
	ledger := &fencesDown{Ledger: st}
	proxy := startSwitchProxy(t, a.Addr())
	s := newSender(t, connect(t, proxy.URL(), broker.Options{Ledger: ledger}), "unfenced")
	s.send()
	s.send()
	proxy.to(b.Addr()) // a failover to a primary without the room
	last := s.send().Seq
	ledger.down.Store(true)
	proxy.to(a.Addr()) // the old primary back, unchanged, with Postgres down
	for i := range 3 {
		acc, err := s.b.Publish(context.Background(), s.room, "alice", "while down", "down-"+strconv.Itoa(i), time.Now())
		// The first may also meet the connection the switch cut.
		cut := i == 0 && err != nil && strings.Contains(err.Error(), "EOF")
		if !errors.Is(err, broker.ErrNoSeqs) && !cut {
			t.Fatalf("send %d to the unfenced stale primary: seq %d, %v; want it refused (%v)", i, acc.Seq, err, broker.ErrNoSeqs)
		}
	}
	ledger.down.Store(false)
	if seq := s.send().Seq; seq <= last {
		t.Fatalf("once fenced, the room went on at seq %d, not above %d", seq, last)
	}
}
