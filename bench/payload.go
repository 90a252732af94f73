package main

// The JSON event of the websocket burst (f): what a firehose carries is
// Gerrit stream-events, so the payload is a Gerrit-shaped event padded to
// the requested size, with the sequence number and the send time in
// fixed-width fields at known offsets. The publisher rewrites those in place
// before each send (no allocation, no re-encoding); the subscribers read them
// at the same offsets without parsing the whole event, and check that the
// first one parses as JSON.

import (
	"fmt"
	"strings"
)

// jsonNumWidth is the width of the seq and sent_us fields: a uint64 in
// decimal, right-aligned, padded with spaces (JSON allows whitespace before
// a number; leading zeros it does not).
const jsonNumWidth = 20

// sampleEvent is a comment-added event shaped like Gerrit's stream-events
// (field names and nesting as Gerrit 3.x sends them; the values are made up).
const sampleEvent = `"type":"comment-added","eventCreatedOn":1764000000,` +
	`"project":"openstack/nova","refName":"refs/heads/master",` +
	`"change":{"project":"openstack/nova","branch":"master","topic":"numa-weigher",` +
	`"id":"I3f2b8c1d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c","number":912345,` +
	`"subject":"scheduler: weigh NUMA hosts by free pinned CPUs",` +
	`"owner":{"name":"Ada Example","email":"ada@example.org","username":"ada"},` +
	`"url":"https://review.example.org/c/openstack/nova/+/912345",` +
	`"commitMessage":"scheduler: weigh NUMA hosts by free pinned CPUs\n\nThe weigher counted shared CPUs only.\n\nChange-Id: I3f2b8c1d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c\n",` +
	`"createdOn":1763900000,"status":"NEW"},` +
	`"patchSet":{"number":3,"revision":"9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d",` +
	`"parents":["0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b"],"ref":"refs/changes/45/912345/3",` +
	`"uploader":{"name":"Ada Example","email":"ada@example.org","username":"ada"},` +
	`"createdOn":1763990000,"author":{"name":"Ada Example","email":"ada@example.org","username":"ada"},` +
	`"kind":"REWORK","sizeInsertions":42,"sizeDeletions":-7},` +
	`"author":{"name":"Zuul","email":"zuul@example.org","username":"zuul"},` +
	`"approvals":[{"type":"Verified","description":"Verified","value":"1","oldValue":"0"},` +
	`{"type":"Code-Review","description":"Code-Review","value":"0"}],` +
	`"comment":"Patch Set 3: Verified+1\n\nBuild succeeded (check pipeline).\n\n- openstack-tox-py312 https://zuul.example.org/t/openstack/build/1 : SUCCESS in 12m 03s\n- openstack-tox-pep8 https://zuul.example.org/t/openstack/build/2 : SUCCESS in 3m 41s\n"`

// jsonPayload returns a JSON object of exactly size bytes:
//
//	{"bench":{"seq":<20>,"sent_us":<20>},<sampleEvent>,"pad":"xxx…"}
//
// and the offsets of the two number fields. When size is too small for the
// event, the event is left out; below the bare minimum it is an error.
func jsonPayload(size int) (payload []byte, seqOff, sentOff int, err error) {
	blank := strings.Repeat(" ", jsonNumWidth-1) + "0"
	head := `{"bench":{"seq":` + blank + `,"sent_us":` + blank + `}`
	tail := `,"pad":"`
	body := "," + sampleEvent
	if len(head)+len(body)+len(tail)+2 > size {
		body = ""
	}
	pad := size - len(head) - len(body) - len(tail) - 2
	if pad < 0 {
		return nil, 0, 0, fmt.Errorf("a JSON payload needs at least %d bytes, not %d", len(head)+len(tail)+2, size)
	}
	s := head + body + tail + strings.Repeat("x", pad) + `"}`
	seqOff = len(`{"bench":{"seq":`)
	sentOff = seqOff + jsonNumWidth + len(`,"sent_us":`)
	return []byte(s), seqOff, sentOff, nil
}

// putPadded writes v right-aligned in decimal into b, spaces before it.
func putPadded(b []byte, v uint64) {
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 || i == 0 {
			break
		}
	}
	for i--; i >= 0; i-- {
		b[i] = ' '
	}
}
