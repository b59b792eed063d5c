package quota

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// maxKeyPart bounds a user name's or address's part of a Redis key; longer
// parts are hashed.
const maxKeyPart = 128

// rateKey is the Redis key of one window's counter, a hash of each
// incarnation's count: quota:<name>:<key>:<window index>:counts (the
// suffix keeps it apart from the string counters of earlier versions
// during a rolling update).
func rateKey(k entryKey) string {
	return "quota:" + keyPart(k.name) + ":" + keyPart(k.key) + ":" + strconv.FormatInt(k.win, 10) + ":counts"
}

// Connection counts live under one hash tag, {conns}, so open.lua's three
// keys share a Redis Cluster slot (one slot for all of them: cluster-wide
// they are a single shard's load).
const incarnationsKey = "quota:{conns}:incarnations"

func userConnsKey(user string) string { return "quota:{conns}:u:" + keyPart(user) }
func addrConnsKey(addr string) string { return "quota:{conns}:a:" + keyPart(addr) }

// keyPart makes any string a key part that cannot be mistaken for another:
// bytes other than letters, digits and -_.@+ are %-escaped (':' can then
// only separate parts, and no '{' makes a hash tag), and a part longer than
// maxKeyPart becomes '#' and its SHA-256 ('#' is escaped otherwise).
func keyPart(s string) string {
	if len(s) <= maxKeyPart && !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() <= maxKeyPart; i++ {
		if c := s[i]; safe(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	if b.Len() <= maxKeyPart {
		return b.String()
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(sum[:])
}

const hexDigits = "0123456789ABCDEF"

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			return true
		}
	}
	return false
}

func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '@' || c == '+'
}
