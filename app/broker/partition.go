package broker

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// layout names the broker's Redis keys and channels. On one Redis
// (standalone or behind Sentinel, parts == 0) a room's keys share the
// room's hash tag, every room queues on one persist stream, the primary has
// one fence and each room has a channel (PUBLISH). On a Redis Cluster rooms
// are spread over parts partitions by a hash of their name, and everything
// of a partition shares one hash tag (newLayout), so it lives in one hash slot: its
// rooms' keys, its persist stream, its fence and its sharded channel
// (SPUBLISH). One run of the publish script then touches one slot, however
// many of the partition's rooms it carries, and the cluster balances
// partitions, not rooms, across its shards.
type layout struct {
	parts int      // 0: one Redis, not partitioned
	tags  []string // each partition's hash tag
}

const slots = 16384 // a Redis Cluster's hash slots

// newLayout spreads parts partitions (0: none) evenly over the hash slots:
// partition p's tag is {p<p>.<k>} with the least k whose slot lies in the
// p-th of parts equal ranges of slots. Shards own ranges of slots, so each
// holds as many partitions as its share of slots, where tags {p0}..{p127}
// would fall 51, 37 and 40 on three shards.
func newLayout(parts int) layout {
	l := layout{parts: parts}
	for p := range parts {
		lo, hi := p*slots/parts, (p+1)*slots/parts
		for k := 0; ; k++ {
			t := "p" + strconv.Itoa(p) + "." + strconv.Itoa(k)
			if s := int(crc16(t)) % slots; s >= lo && s < hi {
				l.tags = append(l.tags, "{"+t+"}")
				break
			}
		}
	}
	return l
}

// crc16 is the CRC of Redis Cluster's key slots (CRC-16/XMODEM).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// count is how many partitions there are: 1 on one Redis.
func (l layout) count() int { return max(l.parts, 1) }

// part is the room's partition: FNV-1a of its name, modulo the partitions.
func (l layout) part(room string) int {
	if l.parts == 0 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(room))
	return int(h.Sum32() % uint32(l.parts))
}

// tag is the hash tag of partition p.
func (l layout) tag(p int) string { return l.tags[p] }

// room is the prefix of every key of the room.
func (l layout) room(room string) string {
	if l.parts == 0 {
		return "chat:{" + room + "}"
	}
	return "chat:" + l.tag(l.part(room)) + ":r:" + room
}

// stream is partition p's persist stream.
func (l layout) stream(p int) string {
	if l.parts == 0 {
		return PersistStream
	}
	return "chat:" + l.tag(p) + ":persist"
}

// fence is the key of partition p's fence (publish.lua).
func (l layout) fence(p int) string {
	if l.parts == 0 {
		return "chat:fence"
	}
	return "chat:" + l.tag(p) + ":fence"
}

// channel is where the room's messages are published: its own on one
// Redis, its partition's on a cluster (the payload then names the room).
func (l layout) channel(room string) string {
	if l.parts == 0 {
		return l.room(room) + ":pub"
	}
	return l.partChannel(l.part(room))
}

func (l layout) partChannel(p int) string { return "chat:" + l.tag(p) + ":pub" }

// publishCommand is what the script publishes with: a sharded channel
// lives on the shard of its slot only, where a cluster's PUBLISH would be
// broadcast to every node.
func (l layout) publishCommand() string {
	if l.parts == 0 {
		return "PUBLISH"
	}
	return "SPUBLISH"
}

// payloadRoom is what the payload carries before the frame, after the seq:
// nothing on one Redis (the channel names the room), "<room> " on a
// cluster. Room names have no spaces (protocol).
func (l layout) payloadRoom(room string) string {
	if l.parts == 0 {
		return ""
	}
	return room + " "
}

func (l layout) seqKey(room string) string     { return l.room(room) + ":seq" }
func (l layout) epochKey(room string) string   { return l.room(room) + ":epoch" }
func (l layout) logKey(room string) string     { return l.room(room) + ":log" }
func (l layout) replKey(room string) string    { return l.room(room) + ":replid" }
func (l layout) limitKey(room string) string   { return l.room(room) + ":limit" }
func (l layout) checkKey(room string) string   { return l.room(room) + ":recheck" }
func (l layout) seedingKey(room string) string { return l.room(room) + ":seeding" }
func (l layout) dedupeKey(room, user, id string) string {
	return l.room(room) + ":id:" + strconv.Itoa(len(user)) + ":" + user + ":" + id
}

// publishKeys are a send's own KEYS of publish.lua, in its order: the keys
// above, cut from one string. Made one by one they took 17 allocations a
// send, and every byte a send allocates brings the next collection nearer,
// whose mark work holds a one-core instance for milliseconds at a time.
func (l layout) publishKeys(room, user, id string) []string {
	prefix := l.room(room)
	dedupe := ":id:" + strconv.Itoa(len(user)) + ":" + user + ":" + id
	suffixes := [...]string{":seq", ":epoch", ":log", dedupe, ":replid", ":limit", ":recheck", ":seeding"}
	n := len(suffixes) * len(prefix)
	for _, s := range suffixes {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	var ends [len(suffixes)]int
	for i, s := range suffixes {
		b.WriteString(prefix)
		b.WriteString(s)
		ends[i] = b.Len()
	}
	all, start := b.String(), 0
	keys := make([]string, len(suffixes))
	for i, end := range ends {
		keys[i], start = all[start:end], end
	}
	return keys
}

// entryID names a persist entry across partitions: the stream id on one
// Redis, "<partition>/<stream id>" on a cluster.
func (l layout) entryID(p int, id string) string {
	if l.parts == 0 {
		return id
	}
	return strconv.Itoa(p) + "/" + id
}

// splitEntryID is entryID's inverse.
func (l layout) splitEntryID(s string) (p int, id string, err error) {
	if l.parts == 0 {
		return 0, s, nil
	}
	ps, id, ok := strings.Cut(s, "/")
	p, err = strconv.Atoi(ps)
	if !ok || err != nil || p < 0 || p >= l.parts {
		return 0, "", fmt.Errorf("persist entry id %q is not <partition>/<stream id>", s)
	}
	return p, id, nil
}
