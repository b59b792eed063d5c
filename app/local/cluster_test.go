package local

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// A killed primary's replica takes over either way: elected by the other
// primaries, or, when no majority can vote (one of the two others is
// stopped, as a Redis refusing its votes would leave it), made to take
// over (CLUSTER FAILOVER TAKEOVER) once the election has had its time.
func TestAKilledPrimarysReplicaTakesOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, t.TempDir(), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(10 * time.Second) })
	for _, tc := range []struct {
		name         string
		voterStopped bool
	}{
		{"elected", false},
		{"a voter stopped", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primaries, err := c.Primaries(ctx)
			if err != nil {
				t.Fatal(err)
			}
			dead, voter := primaries[0], primaries[1]
			replica, err := c.replicaOf(ctx, dead)
			if err != nil {
				t.Fatal(err)
			}
			resumed := make(chan struct{})
			if tc.voterStopped {
				if err := voter.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				// The voter comes back once the replica is a primary: the
				// cluster needs it to be healthy again.
				go func() {
					defer close(resumed)
					defer voter.Signal(syscall.SIGCONT)
					for ctx.Err() == nil {
						if repl, err := replica.Info(ctx, "replication"); err == nil && repl["role"] == "master" {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
			} else {
				close(resumed)
			}
			p, err := c.killPrimary(ctx, dead, 3*clusterNodeTimeout)
			<-resumed
			if err != nil {
				t.Fatal(err)
			}
			if p.Node != replica {
				t.Errorf("promoted %s, want %s", p.Node.Name, replica.Name)
			}
			if forced := p.Forced != ""; forced != tc.voterStopped {
				t.Errorf("taken over by force: %v, want %v (the nodes logged: %s)", forced, tc.voterStopped, p.Forced)
			}
		})
	}
}
