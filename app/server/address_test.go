package server

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddressBelievesOnlyTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"a direct client is its peer address", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"a direct client cannot claim another address", "203.0.113.7:5000", []string{"6.6.6.6"}, "203.0.113.7"},
		{"behind NGINX: the address NGINX saw", "127.0.0.1:40000", []string{"127.0.0.5"}, "127.0.0.5"},
		{"behind the ALB: the rightmost untrusted hop", "10.1.2.3:40000", []string{"6.6.6.6, 198.51.100.9"}, "198.51.100.9"},
		{"hops through several trusted proxies", "10.1.2.3:40000", []string{"198.51.100.9, 10.9.9.9", "10.8.8.8"}, "198.51.100.9"},
		{"a trusted peer with no header counts as itself", "10.1.2.3:40000", nil, "10.1.2.3"},
		{"a broken entry stops the walk at the last trusted hop", "10.1.2.3:40000", []string{"198.51.100.9, garbage"}, "10.1.2.3"},
		{"IPv4-mapped IPv6 is the IPv4 address", "[::ffff:203.0.113.7]:5000", nil, "203.0.113.7"},
		{"IPv6 clients", "10.1.2.3:40000", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddress(r, trusted); got.String() != tc.want {
				t.Fatalf("clientAddress = %s, want %s", got, tc.want)
			}
		})
	}
}
