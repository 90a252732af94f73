package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

func TestVarint(t *testing.T) {
	// Boundary values from MQTT 3.1.1 table 2.4.
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, maxRemaining} {
		b := appendVarint(nil, n)
		pkt := append([]byte{pktPingresp << 4}, b...)
		pkt = append(pkt, make([]byte, n%1000)...) // body length is checked separately below
		if n >= 1000 {
			continue
		}
		pr := newPacketReader(bytes.NewReader(pkt), 64)
		_, body, err := pr.next()
		if err != nil || len(body) != n {
			t.Errorf("n=%d: got len %d, err %v", n, len(body), err)
		}
	}
	if got := appendVarint(nil, 321); !bytes.Equal(got, []byte{0xc1, 0x02}) {
		t.Errorf("varint(321) = %x, want c102", got)
	}
}

func TestConnectBytes(t *testing.T) {
	got := connectPacket("c", "u", "p", 60)
	want := []byte{0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 60, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'}
	if !bytes.Equal(got, want) {
		t.Errorf("CONNECT\n got %x\nwant %x", got, want)
	}
	if got := subscribePacket(1, "a/#", 0); !bytes.Equal(got, []byte{0x82, 8, 0, 1, 0, 3, 'a', '/', '#', 0}) {
		t.Errorf("SUBSCRIBE = %x", got)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, 5000) // larger than the reader's buffer
	pkt, off := publishPacket("bench/fan", payload)
	if !bytes.Equal(pkt[off:], payload) {
		t.Fatal("payload offset wrong")
	}
	small, _ := publishPacket("t", []byte("hello"))
	pr := newPacketReader(bytes.NewReader(append(append([]byte{}, pkt...), small...)), 4096)
	for _, want := range [][]byte{payload, []byte("hello")} {
		h, body, err := pr.next()
		if err != nil {
			t.Fatal(err)
		}
		p, ok := publishPayload(h, body)
		if !ok || !bytes.Equal(p, want) {
			t.Fatalf("payload mismatch: ok=%v len=%d", ok, len(p))
		}
	}
}

func TestHistogram(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v = v*9/8 + 1 {
		b := bucketOf(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		prev = b
		if mid := bucketMid(b); float64(mid) < float64(v)*0.96 || float64(mid) > float64(v)*1.04 {
			t.Fatalf("bucketMid(bucketOf(%d)) = %d: over 4 %% off", v, mid)
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(i, int64(i*100))
	}
	c := h.merged()
	if p := quantile(c, 0.5); p < 48000 || p > 52000 {
		t.Errorf("p50 = %d, want ≈ 50000", p)
	}
	if p := quantile(c, 0.99); p < 96000 || p > 103000 {
		t.Errorf("p99 = %d, want ≈ 99000", p)
	}
}

// testBrokers returns Mosquitto when installed, and the appliance when
// FIREHOSECTL names a built firehosectl (the bench tests do not build it: a
// half-written CLI elsewhere in the tree must not fail them).
func testBrokers(t *testing.T) []broker {
	t.Helper()
	var bs []broker
	if m, err := newMosquitto("mosquitto"); err == nil {
		bs = append(bs, m)
	}
	if bin := os.Getenv("FIREHOSECTL"); bin != "" {
		a, err := newAppliance(context.Background(), ".", bin, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, a)
	}
	if len(bs) == 0 {
		t.Skip("no broker: install mosquitto or set FIREHOSECTL")
	}
	return bs
}

// TestRun drives tiny runs end to end: broker start, readiness, subscribers,
// authenticated publisher, ACL, counting. It checks the instrument, never a
// timing.
func TestRun(t *testing.T) {
	d := &dialer{perAddr: 1000}
	o := runOpts{payload: 1024, runTimeout: 30 * time.Second, stall: 2 * time.Second}
	for _, b := range testBrokers(t) {
		for _, sc := range []scenario{
			{Key: "tcp", Group: "a", Transport: "tcp", Subs: 20, Msgs: 50},
			{Key: "ws", Group: "d", Transport: "ws", Subs: 5, Msgs: 10},
			{Key: "rate", Group: "b", Transport: "tcp", Subs: 5, Msgs: 5, Rate: 50},
			{Key: "idle", Group: "c", Transport: "tcp", Subs: 50, Idle: true},
		} {
			t.Run(b.Name()+"/"+sc.Key, func(t *testing.T) {
				r := runOne(context.Background(), b, sc, 1, t.TempDir(), d, o)
				if r.Error != "" {
					t.Fatal(r.Error)
				}
				if !r.Complete || r.Delivered != int64(sc.Msgs*sc.Subs) || r.Reorders != 0 || r.SubscriberErrors != 0 {
					t.Errorf("incomplete: %+v", r)
				}
				if r.PeakRSSMiB <= 0 {
					t.Errorf("no peak RSS read: %+v", r)
				}
			})
		}
	}
}

// TestAnonymousCannotPublish checks the ACL half of "configured equivalently":
// a publish from an anonymous client must not reach subscribers.
func TestAnonymousCannotPublish(t *testing.T) {
	for _, b := range testBrokers(t) {
		t.Run(b.Name(), func(t *testing.T) {
			ctx := context.Background()
			in, err := b.Start(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer in.stop()
			d := &dialer{perAddr: 1000}
			f, err := connectFleet(ctx, d, in.mqtt, "tcp", 3, "acl")
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			anon, err := connectPublisher(ctx, d, in.mqtt, "", "", "anon", 64)
			if err != nil {
				t.Fatal(err)
			}
			defer anon.close()
			if err := anon.send(0); err != nil {
				t.Fatal(err)
			}
			// A broker may instead disconnect the offender: then there is no
			// PINGRESP, and nothing was delivered either, checked below.
			syncErr := anon.sync(2 * time.Second)
			auth, err := connectPublisher(ctx, d, in.mqtt, pubUser, pubPass, "auth", 64)
			if err != nil {
				t.Fatal(err)
			}
			defer auth.close()
			if err := auth.send(1); err != nil {
				t.Fatal(err)
			}
			// The broker had handled the anonymous publish (sync) before the
			// authorised one was sent: once that has arrived everywhere, the
			// anonymous one would have too.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if n, _ := f.received(); n == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("authorised publish not delivered")
				}
			}
			if n := f.warmCount(); n != 0 {
				t.Errorf("anonymous publish reached %d subscribers (sync: %v)", n, syncErr)
			}
		})
	}
}
