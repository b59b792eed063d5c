package broker

import "strings"

// PartitionSlots answers the hash slot of a room's partition on a cluster
// of partitions partitions, for tests that load one shard.
func PartitionSlots(partitions int) func(room string) int {
	l := newLayout(partitions)
	return func(room string) int { return int(crc16(strings.Trim(l.tag(l.part(room)), "{}"))) % slots }
}
