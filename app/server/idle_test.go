package server

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard-dev/switchboard/app/auth"
)

// TestAnIdleSessionStaysSmall: what every idle connection holds of its
// session. A session fits the runtime's 240-byte size class (the next is
// 256: runtime/sizeclasses.go), holds no channel until it ends and no timer
// of its own (112 bytes and a slot in the runtime's timer heap; ticks.go
// runs its ticks).
func TestAnIdleSessionStaysSmall(t *testing.T) {
	if size := unsafe.Sizeof(session{}); size > 240 {
		t.Errorf("a session is %d bytes: past the 240-byte size class, each idle connection costs 16 bytes more", size)
	}
	for f := range reflect.TypeFor[session]().Fields() {
		if f.Type == reflect.TypeFor[*time.Timer]() {
			t.Errorf("a session holds a timer of its own (%s)", f.Name)
		}
	}
	s := newSession(&Server{}, nil, auth.Claims{User: "idle", Expires: time.Now().Add(time.Hour)})
	if s.done != nil || s.taken != nil || s.queue != nil {
		t.Errorf("a new session holds a channel or a queue: done %v, taken %v, queue %v", s.done, s.taken, s.queue)
	}
}
