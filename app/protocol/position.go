package protocol

// Position is where a room's stream stands: its newest seq and the epoch the
// seqs belong to. The epoch changes when Redis has lost the room's state and
// the counter was reseeded above everything that may have been acked.
type Position struct {
	Seq   int64
	Epoch string
}
