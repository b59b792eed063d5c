package protocol

import "time"

// Delivery is one encoded message frame on its way to a room's members: the
// frame is encoded once and the same bytes go to every recipient.
type Delivery struct {
	Room     string
	Seq      int64
	Frame    []byte
	Accepted time.Time // when the accepting instance took it (zero for history)
}
