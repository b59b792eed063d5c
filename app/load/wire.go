package load

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
)

// The client side of RFC 6455, as much as the load tool needs: its own
// framing lets one epoll loop read thousands of connections, where a
// WebSocket library wants a goroutine blocked in each.
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa

	// maxFrame bounds a server frame; the server's own limits are far below.
	maxFrame = 16 << 20
)

// acceptGUID is the fixed key suffix of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// handshake upgrades nc to a WebSocket on u and returns what the server
// sent after its 101, the start of the first frames.
func handshake(nc net.Conn, u *url.URL, token string) ([]byte, error) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
		"\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, fmt.Errorf("connect: %w", unwrapNet(err))
	}
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", unwrapNet(err))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("handshake refused: %s%s", resp.Status, hint(resp.StatusCode, u.Path))
	}
	sum := sha1.Sum([]byte(key + acceptGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return nil, errors.New("handshake: Sec-WebSocket-Accept does not match the key")
	}
	rest, _ := br.Peek(br.Buffered())
	return append([]byte(nil), rest...), nil
}

// appendFrame appends a whole client frame, masked as RFC 6455 §5.3
// requires of every frame a client sends.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], mrand.Uint32())
	dst = append(dst, key[:]...)
	for i, b := range payload {
		dst = append(dst, b^key[i&3])
	}
	return dst
}

// nextFrame reads the server frame at the head of b. n is 0 while b holds
// less than the whole frame.
func nextFrame(b []byte) (fin bool, op byte, payload []byte, n int, err error) {
	if len(b) < 2 {
		return false, 0, nil, 0, nil
	}
	if b[1]&0x80 != 0 {
		return false, 0, nil, 0, errors.New("the server masked a frame (RFC 6455 §5.1 forbids it)")
	}
	size, head := uint64(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return false, 0, nil, 0, nil
		}
		size, head = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return false, 0, nil, 0, nil
		}
		size, head = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > maxFrame {
		return false, 0, nil, 0, fmt.Errorf("a frame of %d bytes, over the %d this tool reads", size, maxFrame)
	}
	if uint64(len(b)-head) < size {
		return false, 0, nil, 0, nil
	}
	end := head + int(size)
	return b[0]&0x80 != 0, b[0] & 0x0f, b[head:end], end, nil
}
