package broker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// encode makes a real PUBLISH with mochi's own encoder.
func encode(t testing.TB, payload int) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: make([]byte, payload), ProtocolVersion: 4}
	var b bytes.Buffer
	if err := pk.PublishEncode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFramerLimits(t *testing.T) {
	small, big := encode(t, 10), encode(t, 300)
	stream := append(append(append([]byte{}, small...), small...), big...)
	for _, chunk := range []int{1, 2, 7, len(stream)} {
		var f framer
		var err error
		fed := 0
		for i := 0; i < len(stream) && err == nil; i += chunk {
			end := min(i+chunk, len(stream))
			err = f.feed(stream[i:end], int64(len(small)))
			fed = end
		}
		if err != errPacketTooLarge {
			t.Fatalf("chunk %d: err = %v, want errPacketTooLarge", chunk, err)
		}
		// It must fail on the big packet's header, before its body arrives.
		if fed > 2*len(small)+5+chunk {
			t.Fatalf("chunk %d: failed only after %d bytes", chunk, fed)
		}
		f = framer{}
		if err := f.feed(stream, int64(len(big))); err != nil {
			t.Fatalf("limit = largest packet: %v", err)
		}
	}
	var f framer
	if err := f.feed([]byte{0x30, 0xff, 0xff, 0xff, 0xff}, 1<<30); err != errMalformedLength {
		t.Fatalf("five length bytes: %v", err)
	}
}

// FuzzFramer: no stream, split anywhere, panics the framer or makes it
// read past a length field; real packets are covered by TestFramerLimits.
func FuzzFramer(f *testing.F) {
	f.Add([]byte{0x30, 0x05, 0, 1, 'a', 'x', 'y'}, uint8(3))
	f.Add(encode(f, 200), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, split uint8) {
		var fr framer
		step := int(split)%16 + 1
		for i := 0; i < len(stream); i += step {
			if fr.feed(stream[i:min(i+step, len(stream))], 256) != nil {
				return
			}
		}
	})
}
