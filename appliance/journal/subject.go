package journal

import (
	"errors"
	"strings"
	"unicode/utf8"

	mqtttopic "github.com/firehose/firehose/appliance/topic"
)

// Subjects. Every MQTT topic maps to exactly one NATS subject and back:
//
//	firehose.<kind>.<level 1>.<level 2>...<level n>
//
// kind is "m" for a message and "r" for a retained message (a retained
// message and a plain one on the same topic are different subjects, so the
// retained stream can source exactly the retained ones); topics whose first
// level starts with '$' get "$m" and "$r", because MQTT's wildcards do not
// match them and NATS's would: a filter starting with a wildcard then simply
// names the kinds "m" and "r".
//
// Each MQTT level is one subject token. NATS tokens cannot be empty and
// cannot hold '.', whitespace, or the wildcards '*' and '>', so a level is
// written with these bytes percent-encoded as %XX (upper-case hex): '%'
// itself, '.', '*', '>', every byte up to and including space, DEL, and the
// UTF-8 bytes of U+FFFD (which nats-server takes as a sign of broken text).
// An empty level is the token "%" alone, which no encoded level can be.
// Everything else, UTF-8 included, stays as it is, so subjects remain
// readable: "gerrit/openstack/nova/stable/2023.1" is
// "firehose.m.gerrit.openstack.nova.stable.2023%2E1".
//
// nats-server's own MQTT bridge maps '.' to "//" and refuses spaces, which
// is why this mapping is the appliance's own; subject_test.go fuzzes it
// against appliance/topic.Match and nats-server's subject matching.
const (
	subjectPrefix = "firehose."
	kindMessage   = "m"
	kindRetained  = "r"

	// gapSubject holds the markers written when the journal could write
	// again after messages went out live only. It has one token after the
	// prefix, so no topic filter matches it.
	gapSubject = "firehose.gap"
	// allEvents matches every event subject and the gap markers.
	allEvents = "firehose.>"
	// retainedEvents matches every retained message (topics never start
	// with '$' in the journal: $SYS stays local).
	retainedEvents = "firehose.r.>"
)

const hexDigits = "0123456789ABCDEF"

// Subject returns the subject for a valid topic name.
func Subject(topic string, retain bool) string {
	var b strings.Builder
	b.Grow(len(subjectPrefix) + 3 + len(topic) + 8)
	b.WriteString(subjectPrefix)
	b.WriteString(kind(strings.HasPrefix(topic, "$"), retain))
	for rest := topic; ; {
		level, tail, more := strings.Cut(rest, "/")
		b.WriteByte('.')
		encodeLevel(&b, level)
		if !more {
			break
		}
		rest = tail
	}
	return b.String()
}

func kind(dollar, retain bool) string {
	k := kindMessage
	if retain {
		k = kindRetained
	}
	if dollar {
		return "$" + k
	}
	return k
}

func encodeLevel(b *strings.Builder, level string) {
	if level == "" {
		b.WriteByte('%')
		return
	}
	for i := 0; i < len(level); {
		c := level[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '%' || c == '.' || c == '*' || c == '>' {
				escapeByte(b, c)
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(level[i:])
		if r == utf8.RuneError {
			// The replacement character itself, or (never in a valid
			// topic) a broken byte: both encoded byte by byte.
			for j := range size {
				escapeByte(b, level[i+j])
			}
		} else {
			b.WriteString(level[i : i+size])
		}
		i += size
	}
}

func escapeByte(b *strings.Builder, c byte) {
	b.WriteByte('%')
	b.WriteByte(hexDigits[c>>4])
	b.WriteByte(hexDigits[c&0xf])
}

var errNotEvent = errors.New("not an event subject")

// TopicOf reverses Subject. It refuses any subject Subject cannot produce,
// so the mapping is one-to-one both ways.
func TopicOf(subject string) (topic string, retain bool, err error) {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	if !ok {
		return "", false, errNotEvent
	}
	k, levels, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false, errNotEvent
	}
	var dollar bool
	switch k {
	case kindMessage:
	case kindRetained:
		retain = true
	case "$" + kindMessage:
		dollar = true
	case "$" + kindRetained:
		dollar, retain = true, true
	default:
		return "", false, errNotEvent
	}
	var b strings.Builder
	b.Grow(len(levels))
	for first := true; ; first = false {
		tok, tail, more := strings.Cut(levels, ".")
		if !first {
			b.WriteByte('/')
		}
		if err := decodeLevel(&b, tok); err != nil {
			return "", false, err
		}
		if !more {
			break
		}
		levels = tail
	}
	topic = b.String()
	if strings.HasPrefix(topic, "$") != dollar || !mqtttopic.ValidName(topic) {
		return "", false, errNotEvent
	}
	return topic, retain, nil
}

func decodeLevel(b *strings.Builder, tok string) error {
	if tok == "%" {
		return nil
	}
	if tok == "" {
		return errNotEvent
	}
	start := b.Len()
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			if c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' {
				return errNotEvent
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return errNotEvent
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return errNotEvent
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	// Canonical form only: the level must encode back to this very token.
	var re strings.Builder
	encodeLevel(&re, b.String()[start:])
	if re.String() != tok {
		return errNotEvent
	}
	return nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// FilterSubjects returns the NATS subject filters that together match
// exactly the subjects of the topics a valid MQTT filter matches, retained
// and not. They never overlap, as a NATS consumer requires. A trailing '#'
// also matches its parent level ("a/#" matches "a"), hence a second filter
// without it.
func FilterSubjects(filter string) []string {
	dollar := strings.HasPrefix(filter, "$")
	var tail strings.Builder
	parent := ""
	for rest, first := filter, true; ; first = false {
		level, more, ok := strings.Cut(rest, "/")
		switch level {
		case "+":
			tail.WriteString(".*")
		case "#":
			if !first {
				parent = tail.String()
			}
			tail.WriteString(".>")
		default:
			tail.WriteByte('.')
			encodeLevel(&tail, level)
		}
		if !ok {
			break
		}
		rest = more
	}
	out := make([]string, 0, 4)
	for _, retain := range []bool{false, true} {
		k := subjectPrefix + kind(dollar, retain)
		out = append(out, k+tail.String())
		if parent != "" {
			out = append(out, k+parent)
		}
	}
	return out
}
