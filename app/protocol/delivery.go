package protocol

import "time"

// Delivery is one encoded message frame on its way to a room's members: the
// frame is encoded once and the same bytes go to every recipient. A
// history_gap travels the same way, in its place in the room's order: its
// From..Seq is the range it announces.
type Delivery struct {
	Room     string
	Seq      int64
	From     int64 // > 0 only for a history_gap
	Frame    []byte
	Accepted time.Time // when the accepting instance took it (zero for history)
}

// Gap builds the history_gap delivery for room's from..to.
func Gap(room string, from, to int64) *Delivery {
	return &Delivery{Room: room, Seq: to, From: from, Frame: HistoryGap(room, from, to)}
}

// IsMessage tells a chat message from a control frame or a gap.
func (d *Delivery) IsMessage() bool { return d.Seq > 0 && d.From == 0 }
