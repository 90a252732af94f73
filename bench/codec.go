package main

// The lean MQTT 3.1.1 codec: only the packets a fan-out benchmark sends or
// receives (CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH at QoS 0, PINGREQ,
// PINGRESP, DISCONNECT).
// Written from the OASIS MQTT 3.1.1 specification, sections 2 and 3. A full
// client library spends more CPU per received message than the broker spends
// sending it, so the subscriber side must stay this small.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet types (spec 2.2.1), as found in the high nibble of the first byte.
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// maxRemaining is the largest remaining length four varint bytes can carry.
const maxRemaining = 268435455

// appendVarint appends the "remaining length" encoding (spec 2.2.3).
func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// appendString appends a length-prefixed UTF-8 string (spec 1.5.3).
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connectPacket encodes CONNECT with a clean session. user/pass may be empty.
// keepalive is in seconds; subscribers use a long one so that no PINGREQ is
// needed during a bounded run.
func connectPacket(clientID, user, pass string, keepalive uint16) []byte {
	var vh []byte
	vh = appendString(vh, "MQTT")
	vh = append(vh, 4)  // protocol level 3.1.1
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	vh = append(vh, flags)
	vh = binary.BigEndian.AppendUint16(vh, keepalive)
	vh = appendString(vh, clientID)
	if user != "" {
		vh = appendString(vh, user)
	}
	if pass != "" {
		vh = appendString(vh, pass)
	}
	return frame(pktConnect<<4, vh)
}

// subscribePacket encodes SUBSCRIBE for one filter; its fixed-header flags
// must be 0b0010 (spec 3.8.1).
func subscribePacket(id uint16, filter string, qos byte) []byte {
	var vh []byte
	vh = binary.BigEndian.AppendUint16(vh, id)
	vh = appendString(vh, filter)
	vh = append(vh, qos)
	return frame(pktSubscribe<<4|0x02, vh)
}

// publishPacket encodes a QoS 0 PUBLISH. The caller may rewrite the payload
// bytes in place before each send: payloadOffset tells where they start.
func publishPacket(topic string, payload []byte) (pkt []byte, payloadOffset int) {
	pkt, _, payloadOffset = publishPacketQoS(topic, payload, 0)
	return pkt, payloadOffset
}

// publishPacketQoS encodes a PUBLISH at QoS 0 or 1. At QoS 1 the packet
// identifier (spec 3.3.2.2) sits at idOffset, zero until the caller writes
// one; at QoS 0 idOffset is -1.
func publishPacketQoS(topic string, payload []byte, qos byte) (pkt []byte, idOffset, payloadOffset int) {
	var vh []byte
	vh = appendString(vh, topic)
	idAt := -1
	if qos > 0 {
		idAt = len(vh)
		vh = append(vh, 0, 0)
	}
	vh = append(vh, payload...)
	pkt = frame(pktPublish<<4|qos<<1, vh)
	hdr := len(pkt) - len(vh)
	if idAt >= 0 {
		idAt += hdr
	}
	return pkt, idAt, hdr + len(vh) - len(payload)
}

// disconnectPacket is the two-byte DISCONNECT.
func disconnectPacket() []byte { return []byte{pktDisconnect << 4, 0} }

func frame(first byte, body []byte) []byte {
	b := make([]byte, 0, len(body)+5)
	b = append(b, first)
	b = appendVarint(b, len(body))
	return append(b, body...)
}

// packetReader reads whole packets off a buffered stream. A body that fits
// the buffer is returned without a copy (Peek) and is valid only until the
// next call; larger bodies are copied into a reused scratch slice.
type packetReader struct {
	br      *bufio.Reader
	scratch []byte
	pending int // bytes of the previous body still to discard
}

func newPacketReader(r io.Reader, size int) *packetReader {
	return &packetReader{br: bufio.NewReaderSize(r, size)}
}

var errMalformed = errors.New("mqtt: malformed remaining length")

// next returns the first header byte and the body of the next packet.
func (p *packetReader) next() (byte, []byte, error) {
	if p.pending > 0 {
		if _, err := p.br.Discard(p.pending); err != nil {
			return 0, nil, err
		}
		p.pending = 0
	}
	h, err := p.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errMalformed
		}
		d, err := p.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		mult *= 128
	}
	if n <= p.br.Size() {
		body, err := p.br.Peek(n)
		if err != nil {
			return 0, nil, err
		}
		p.pending = n
		return h, body, nil
	}
	if cap(p.scratch) < n {
		p.scratch = make([]byte, n)
	}
	body := p.scratch[:n]
	_, err = io.ReadFull(p.br, body)
	return h, body, err
}

// publishPayload returns the application payload of a PUBLISH body,
// skipping the topic and, at QoS > 0, the packet identifier (spec 3.3.2).
func publishPayload(h byte, body []byte) ([]byte, bool) {
	if len(body) < 2 {
		return nil, false
	}
	off := 2 + int(binary.BigEndian.Uint16(body))
	if (h>>1)&3 > 0 {
		off += 2
	}
	if off > len(body) {
		return nil, false
	}
	return body[off:], true
}

// expectConnack reads the CONNACK and turns a refusal into an error that
// names the return code (spec 3.2.2.3).
func expectConnack(pr *packetReader) error {
	h, body, err := pr.next()
	if err != nil {
		return fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if h>>4 != pktConnack || len(body) != 2 {
		return fmt.Errorf("expected CONNACK, got packet type %d", h>>4)
	}
	if rc := body[1]; rc != 0 {
		return fmt.Errorf("CONNACK refused: return code %d (%s)", rc, connackReason(rc))
	}
	return nil
}

func connackReason(rc byte) string {
	switch rc {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return "unknown"
}

// expectSuback reads the SUBACK for packet id and checks the grant.
func expectSuback(pr *packetReader, id uint16) error {
	for {
		h, body, err := pr.next()
		if err != nil {
			return fmt.Errorf("waiting for SUBACK: %w", err)
		}
		// A retained or early message may arrive before the SUBACK; skip it.
		if h>>4 == pktPublish {
			continue
		}
		if h>>4 != pktSuback || len(body) < 3 {
			return fmt.Errorf("expected SUBACK, got packet type %d", h>>4)
		}
		if got := binary.BigEndian.Uint16(body); got != id {
			return fmt.Errorf("SUBACK for packet %d, want %d", got, id)
		}
		if body[2] == 0x80 {
			return errors.New("SUBACK: subscription refused")
		}
		return nil
	}
}
