// Package load drives a Switchboard deployment (or, to compare, a
// Centrifugo server: dialect.go) with many WebSocket clients and measures it: connects, acks, deliveries, publish-to-deliver latency,
// lost and duplicated messages, disconnects. One process runs a share of
// the connections; cmd/chatload spreads a run over several processes, since
// each may hold only so many open files, and merges their reports.
package load

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Options describe a whole run; Index and Of pick one process's share.
type Options struct {
	Endpoint    string        // the load balancer: http(s)://host:port or ws(s)://host:port/ws
	Protocol    string        // switchboard (the default), or centrifugo to measure Centrifugo alike
	Token       string        // one token for every connection, or
	Secret      string        // the server's JWT_SECRET, to mint one token per connection
	Conns       int           // connections in all
	ConnectRate float64       // new connections a second in all; 0: as fast as they open
	Rooms       int           // rooms; the connections spread evenly over them
	Publishers  int           // the first Publishers connections also send
	Rate        float64       // messages a second in all
	Size        int           // bytes of message text
	Duration    time.Duration // how long to publish (or, with no publishers, to hold the connections open), or
	Messages    int           // how many messages to publish in all
	Drain       time.Duration // wait at most this long for late deliveries once publishing stops
	RoomPrefix  string        // rooms are <prefix>-<n>; a fresh prefix per run
	Spread      bool          // dial from 127.a.b.c so that ip_hash spreads the clients
	Index, Of   int           // this process's share: connections k with k % Of == Index
}

// Validate refuses options that cannot make a run, naming the flag.
func (o *Options) Validate() error {
	var errs []error
	u, err := o.url()
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := dialectOf(o.Protocol); err != nil {
		errs = append(errs, err)
	}
	if o.Token == "" && o.Secret == "" {
		errs = append(errs, errors.New("-token or -secret: one is needed to authenticate"))
	}
	if o.Conns < 1 {
		errs = append(errs, errors.New("-conns: want at least 1"))
	}
	if o.Rooms < 1 || o.Rooms > o.Conns {
		errs = append(errs, fmt.Errorf("-rooms %d: want 1 to -conns (%d)", o.Rooms, o.Conns))
	}
	if o.Publishers < 0 || o.Publishers > o.Conns {
		errs = append(errs, fmt.Errorf("-publishers %d: want 0 to -conns (%d)", o.Publishers, o.Conns))
	}
	if o.Publishers > 0 && (o.Rate <= 0 || (o.Duration <= 0 && o.Messages <= 0)) {
		errs = append(errs, errors.New("-rate and -duration or -messages: publishers need a positive rate and an end"))
	}
	if o.Size < 24 {
		errs = append(errs, errors.New("-size: want at least 24 bytes (the send time travels in the text)"))
	}
	if o.Of < 1 || o.Index < 0 || o.Index >= o.Of {
		errs = append(errs, fmt.Errorf("worker %d of %d: want 0 ≤ index < of", o.Index, o.Of))
	}
	if o.Spread && u != nil {
		if ip := net.ParseIP(u.Hostname()); !(u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("-spread: the endpoint %s is not on loopback; source addresses 127.x.y.z cannot reach it", u.Host))
		}
	}
	return errors.Join(errs...)
}

// url is the WebSocket URL of the endpoint, with the protocol's path when
// it gives none.
func (o *Options) url() (*url.URL, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-endpoint %q: want http(s)://host:port or ws(s)://host:port/ws", o.Endpoint)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("-endpoint %q: scheme %q, want http, https, ws or wss", o.Endpoint, u.Scheme)
	}
	if d, err := dialectOf(o.Protocol); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = d.path()
	}
	return u, nil
}

// Loopback says whether the endpoint is on this machine.
func (o *Options) Loopback() bool {
	u, err := o.url()
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()
}

// source is connection k's address: a different /24 for each k, the part
// NGINX's ip_hash keys on.
func source(k int) net.IP {
	return net.IPv4(127, byte(1+k/250%250), byte(1+k%250), byte(2+k/62500))
}

func (o *Options) room(k int) string { return fmt.Sprintf("%s-%d", o.RoomPrefix, k%o.Rooms) }

func (o *Options) mine(k int) bool { return k%o.Of == o.Index }

// perPublisher is each publisher's interval between sends.
func (o *Options) perPublisher() time.Duration {
	return time.Duration(float64(time.Second) * float64(o.Publishers) / o.Rate)
}

// String is the run in one line, for the summary.
func (o *Options) String() string {
	s := fmt.Sprintf("%d conns, %d rooms of %d", o.Conns, o.Rooms, o.Conns/o.Rooms)
	if o.Publishers > 0 {
		s += fmt.Sprintf(", %d publishers at %.0f msg/s of %d B", o.Publishers, o.Rate, o.Size)
	}
	return s + " via " + strings.TrimSuffix(o.Endpoint, "/")
}
