package journal

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/firehose/firehose/appliance/topic"
)

var topicSeeds = []string{
	"gerrit/openstack/nova/comment-added",
	"gerrit/openstack/nova/stable/2023.1",
	"gerrit//dropped-output",
	"/", "//", "a", "a/", "/a",
	"with space/and\ttab",
	"star*/gt>/dot.dot/per%cent/%/%25",
	"*", ">", ".", "%",
	"ünïcödé/日本語/🙂",
	"$SYS/broker/clients/total",
	"$", "$/x", "a/$b",
	"ctl\x01\x7f/\u00a0nbsp/\u2028",
	"\ufffd/replacement",
	"{{wildcard(1)}}/x",
}

func TestSubjectExamples(t *testing.T) {
	for topic, want := range map[string]string{
		"gerrit/openstack/nova/stable/2023.1": "firehose.m.gerrit.openstack.nova.stable.2023%2E1",
		"gerrit//dropped-output":              "firehose.m.gerrit.%.dropped-output",
		"a b/*/>/%":                           "firehose.m.a%20b.%2A.%3E.%25",
		"$SYS/x":                              "firehose.$m.$SYS.x",
		"/":                                   "firehose.m.%.%",
	} {
		if got := Subject(topic, false); got != want {
			t.Errorf("Subject(%q) = %q, want %q", topic, got, want)
		}
	}
	if got := Subject("zuul/x", true); got != "firehose.r.zuul.x" {
		t.Errorf("retained subject = %q", got)
	}
	for filter, want := range map[string]string{
		"gerrit/openstack/nova/#": "firehose.m.gerrit.openstack.nova.> firehose.m.gerrit.openstack.nova firehose.r.gerrit.openstack.nova.> firehose.r.gerrit.openstack.nova",
		"#":                       "firehose.m.> firehose.r.>",
		"+/x":                     "firehose.m.*.x firehose.r.*.x",
		"$SYS/#":                  "firehose.$m.$SYS.> firehose.$m.$SYS firehose.$r.$SYS.> firehose.$r.$SYS",
	} {
		if got := strings.Join(FilterSubjects(filter), " "); got != want {
			t.Errorf("FilterSubjects(%q) = %q, want %q", filter, got, want)
		}
	}
	for _, bad := range []string{"firehose.gap", "firehose.x.a", "other.m.a", "firehose.m.a..b", "firehose.m.%41", "firehose.m.%2e", "firehose.m.%2", "firehose.m.a b", "firehose.m.a+b", "firehose.m.$a", "firehose.$m.a", "firehose.m.%00"} {
		if tp, _, err := TopicOf(bad); err == nil {
			t.Errorf("TopicOf(%q) = %q, want an error", bad, tp)
		}
	}
}

// FuzzSubject: every valid topic maps to a valid NATS publish subject that
// maps back to the same topic and retain flag.
func FuzzSubject(f *testing.F) {
	for _, s := range topicSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, tp string, retain bool) {
		if !topic.ValidName(tp) {
			return
		}
		s := Subject(tp, retain)
		if !server.IsValidPublishSubject(s) || strings.ContainsAny(s, " \t\r\n\f") {
			t.Fatalf("Subject(%q) = %q is not a valid NATS publish subject", tp, s)
		}
		got, gotRetain, err := TopicOf(s)
		if err != nil || got != tp || gotRetain != retain {
			t.Fatalf("TopicOf(Subject(%q, %v) = %q) = %q, %v, %v", tp, retain, s, got, gotRetain, err)
		}
	})
}

// FuzzFilterSubjects: a topic's subject matches one of a filter's subject
// filters exactly when the MQTT filter matches the topic, and those subject
// filters are valid and never overlap (NATS consumers refuse overlaps).
func FuzzFilterSubjects(f *testing.F) {
	filters := []string{"#", "+", "+/#", "gerrit/#", "gerrit/openstack/nova/#", "gerrit/+/+/comment-added", "$SYS/#", "+/+", "/#", "a/+/#", "*", ">", "2023.1/#", "%/#"}
	for i, tp := range topicSeeds {
		f.Add(filters[i%len(filters)], tp)
		f.Add(tp, tp)
	}
	f.Fuzz(func(t *testing.T, filter, tp string) {
		if !topic.ValidFilter(filter) || !topic.ValidName(tp) {
			return
		}
		subs := FilterSubjects(filter)
		for i, a := range subs {
			if !server.IsValidSubject(a) {
				t.Fatalf("FilterSubjects(%q) has an invalid subject %q", filter, a)
			}
			for _, b := range subs[i+1:] {
				if server.SubjectsCollide(a, b) {
					t.Fatalf("FilterSubjects(%q): %q and %q overlap", filter, a, b)
				}
			}
		}
		for _, retain := range []bool{false, true} {
			s := Subject(tp, retain)
			matched := false
			for _, fs := range subs {
				matched = matched || server.SubjectMatchesFilter(s, fs)
			}
			if want := topic.Match(filter, tp); matched != want {
				t.Fatalf("filter %q topic %q retain %v: subjects %q match=%v, topic.Match=%v", filter, tp, retain, subs, matched, want)
			}
		}
	})
}
