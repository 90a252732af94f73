package gerrit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/firehose/firehose/appliance/topic"
)

// event is what the publisher needs to know about one stream-events line.
// The line itself is published untouched; these fields only route it.
type event struct {
	typ     string
	project string
	sec     int64 // eventCreatedOn, epoch seconds
	hasSec  bool
}

var errNotObject = errors.New("not a JSON object")

// parseEvent reads the routing fields of one event. It fails only when the
// line is not a JSON object: Gerrit says any field may be missing, and old
// servers send numbers as strings, so missing or odd fields are tolerated.
func parseEvent(line []byte) (event, error) {
	// A map, not a struct: encoding/json matches struct fields without regard
	// to case, and "Project" must not be taken for "project".
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil {
		return event{}, err
	}
	if top == nil { // the line was "null"
		return event{}, errNotObject
	}
	var ev event
	ev.typ, _ = jsonString(top["type"])
	ev.project = projectOf(top)
	ev.sec, ev.hasSec = jsonSeconds(top["eventCreatedOn"])
	return ev, nil
}

// projectOf follows germqtt: project, else change.project, else
// refUpdate.project, else projectName (project-created and
// project-head-updated). The events-log plugin and webhooks write project
// as {"name": ...}; both spellings give the same topic.
func projectOf(top map[string]json.RawMessage) string {
	if p := projectValue(top["project"]); p != "" {
		return p
	}
	for _, outer := range []string{"change", "refUpdate"} {
		var o map[string]json.RawMessage
		if json.Unmarshal(top[outer], &o) == nil {
			if p := projectValue(o["project"]); p != "" {
				return p
			}
		}
	}
	p, _ := jsonString(top["projectName"])
	return p
}

func projectValue(raw json.RawMessage) string {
	if s, ok := jsonString(raw); ok {
		return s
	}
	var o map[string]json.RawMessage
	if json.Unmarshal(raw, &o) == nil {
		s, _ := jsonString(o["name"])
		return s
	}
	return ""
}

func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonSeconds accepts 1530442835 and, as old servers send, "1530442835".
func jsonSeconds(raw json.RawMessage) (int64, bool) {
	if s, ok := jsonString(raw); ok {
		raw = json.RawMessage(s)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// Topic returns the topic an event is published on: <base>/<project>/<type>,
// as germqtt did. Project and type are escaped with topic.EscapeLevel ('+',
// '#', NUL and '%' become %2B, %23, %00, %25); '/' in a project name is kept
// and makes more levels. A missing project or type is an empty level
// ("gerrit//dropped-output"). It fails when event is not a JSON object or the
// topic would not be a valid MQTT topic name (too long, bad base).
func Topic(base string, event []byte) (string, error) {
	ev, err := parseEvent(event)
	if err != nil {
		return "", err
	}
	return ev.topic(base)
}

func (ev event) topic(base string) (string, error) {
	t := base + "/" + topic.EscapeLevel(ev.project) + "/" + topic.EscapeLevel(ev.typ)
	if !topic.ValidName(t) {
		if len(t) > topic.MaxLen {
			return "", fmt.Errorf("topic would be %d bytes, more than MQTT allows (%d)", len(t), topic.MaxLen)
		}
		return "", fmt.Errorf("base topic %q is not a valid topic name", base)
	}
	return t, nil
}

// contentKey identifies an event for deduplication between the live stream
// and the events-log replay. The two may serialize the same event
// differently (key order, escapes, whitespace, project as a string or as
// {"name": ...}), so the key is a hash of a canonical form: objects with
// sorted keys, strings decoded, numbers kept as written.
func contentKey(line []byte) ([32]byte, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		return [32]byte{}, err
	}
	if p, ok := v["project"].(map[string]any); ok {
		if name, ok := p["name"].(string); ok {
			v["project"] = name
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}
