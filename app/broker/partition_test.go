package broker

import (
	"slices"
	"testing"
)

// TestPartitionsAreSpreadEvenlyOverTheHashSlots: partition p's slot lies in
// the p-th of equal slot ranges, by Redis's own CRC (CLUSTER KEYSLOT's
// values for the test vector of the Redis Cluster specification,
// https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#key-distribution-model).
func TestPartitionsAreSpreadEvenlyOverTheHashSlots(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3 (the specification's check value)", got)
	}
	for _, parts := range []int{1, 3, 128, 1024} {
		l := newLayout(parts)
		for p := range parts {
			slot := int(crc16(l.tag(p)[1:len(l.tag(p))-1])) % slots
			if lo, hi := p*slots/parts, (p+1)*slots/parts; slot < lo || slot >= hi {
				t.Fatalf("%d partitions: partition %d (tag %s) is in slot %d, want %d..%d", parts, p, l.tag(p), slot, lo, hi-1)
			}
		}
	}
}

// A send's keys, cut from one string, are the keys each room key function
// names, in publish.lua's order, on one Redis and on a cluster.
func TestPublishKeysAreTheRoomsKeys(t *testing.T) {
	for _, parts := range []int{0, 3} {
		l := newLayout(parts)
		for _, c := range []struct{ room, user, id string }{{"lobby", "ann", "m-1"}, {"r", "", ""}, {"a:b", "u:1", "x"}} {
			want := []string{l.seqKey(c.room), l.epochKey(c.room), l.logKey(c.room), l.dedupeKey(c.room, c.user, c.id),
				l.replKey(c.room), l.limitKey(c.room), l.checkKey(c.room), l.seedingKey(c.room)}
			if got := l.publishKeys(c.room, c.user, c.id); !slices.Equal(got, want) {
				t.Errorf("%d partitions, %+v: publishKeys = %q, want %q", parts, c, got, want)
			}
		}
	}
}
