package gerrit

import (
	"strings"
	"testing"

	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
	"github.com/firehose/firehose/appliance/topic"
)

// samplesPath is the shared corpus of real events.
const samplesPath = gerrittest.SamplesPath

func readSamples(t testing.TB) [][]byte {
	t.Helper()
	return gerrittest.ReadSamples(t, samplesPath)
}

func TestTopic(t *testing.T) {
	tests := []struct {
		name, event, want string
	}{
		{"project string", `{"type":"ref-replicated","project":"test/gerrit-ping"}`, "gerrit/test/gerrit-ping/ref-replicated"},
		{"project object", `{"type":"comment-added","project":{"name":"TestRepo"}}`, "gerrit/TestRepo/comment-added"},
		{"change project", `{"type":"patchset-created","change":{"project":"openstack/nova"}}`, "gerrit/openstack/nova/patchset-created"},
		{"refUpdate project", `{"type":"ref-updated","refUpdate":{"project":"All-Projects"}}`, "gerrit/All-Projects/ref-updated"},
		{"projectName", `{"projectName":"TestRepo3","type":"project-created"}`, "gerrit/TestRepo3/project-created"},
		{"project before change", `{"type":"x","change":{"project":"b"},"project":"a"}`, "gerrit/a/x"},
		{"empty project falls through", `{"type":"x","project":"","change":{"project":"b"}}`, "gerrit/b/x"},
		{"project number falls through", `{"type":"x","project":7,"refUpdate":{"project":"c"}}`, "gerrit/c/x"},
		{"no project", `{"type":"dropped-output"}`, "gerrit//dropped-output"},
		{"no type", `{"author":1}`, "gerrit//"},
		{"type not a string", `{"type":5,"project":"p"}`, "gerrit/p/"},
		{"case matters", `{"Project":"no","type":"t"}`, "gerrit//t"},
		{"wildcards escaped", `{"type":"a+b","project":"c#d%e"}`, "gerrit/c%23d%25e/a%2Bb"},
		{"NUL escaped", `{"type":"t","project":"a\u0000b"}`, "gerrit/a%00b/t"},
		{"unicode kept", `{"type":"t","project":"jäntti/ö"}`, "gerrit/jäntti/ö/t"},
		{"unknown type", `{"type":"change-deferred","change":{"project":"pyside/pyside-setup"}}`, "gerrit/pyside/pyside-setup/change-deferred"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Topic("gerrit", []byte(tt.event))
			if err != nil || got != tt.want {
				t.Errorf("Topic(%s) = %q, %v; want %q", tt.event, got, err, tt.want)
			}
		})
	}
}

func TestTopicErrors(t *testing.T) {
	for _, in := range []string{``, `not json`, `null`, `[1,2]`, `"s"`, `42`, `{"type":"x"} trailing`, `{"type":`} {
		if got, err := Topic("gerrit", []byte(in)); err == nil {
			t.Errorf("Topic(%q) = %q, want an error", in, got)
		}
	}
	long := `{"type":"t","project":"` + strings.Repeat("a", topic.MaxLen) + `"}`
	if _, err := Topic("gerrit", []byte(long)); err == nil {
		t.Error("a topic longer than MQTT allows was accepted")
	}
	if _, err := Topic("a/#", []byte(`{"type":"t"}`)); err == nil {
		t.Error("an invalid base was accepted")
	}
}

func TestTopicSamples(t *testing.T) {
	// Spot checks of the real samples, by line number (1-based).
	want := map[int]string{
		1:  "gerrit/test/gerrit-ping/ref-replicated",
		3:  "gerrit/test/gerrit-ping/ref-updated",
		31: "gerrit/pyside/pyside-setup/change-deferred",
		36: "gerrit/TestRepo3/project-created",
		37: "gerrit/TestRepo3/project-head-updated",
		54: "gerrit//dropped-output",
		55: "gerrit//",
	}
	samples := readSamples(t)
	for i, line := range samples {
		got, err := Topic("gerrit", line)
		if err != nil {
			t.Errorf("line %d: %v", i+1, err)
			continue
		}
		if !topic.ValidName(got) || !strings.HasPrefix(got, "gerrit/") {
			t.Errorf("line %d: invalid topic %q", i+1, got)
		}
		if w, ok := want[i+1]; ok && got != w {
			t.Errorf("line %d: topic %q, want %q", i+1, got, w)
		}
	}
	// Line 39 is a webhooks payload with "project":{"name":...}.
	if got, _ := Topic("gerrit", samples[38]); strings.Contains(got, "{") || got == "gerrit//comment-added" {
		t.Errorf("line 39: project object not used: %q", got)
	}
}

func TestContentKey(t *testing.T) {
	a := []byte(`{"type":"ref-updated","project":"p","eventCreatedOn":1700000000,"x":"\u00e4"}`)
	b := []byte(`{ "eventCreatedOn": 1700000000, "project": {"name":"p"}, "x":"ä", "type":"ref-updated" }`)
	c := []byte(`{"type":"ref-updated","project":"p","eventCreatedOn":1700000001,"x":"ä"}`)
	ka, _ := contentKey(a)
	kb, _ := contentKey(b)
	kc, _ := contentKey(c)
	if ka != kb {
		t.Error("the same event serialized differently got different keys")
	}
	if ka == kc {
		t.Error("different events got the same key")
	}
}

func FuzzTopic(f *testing.F) {
	for _, line := range readSamples(f) {
		f.Add("gerrit", line)
	}
	f.Add("gerrit", []byte(`{"project":"+/#\u0000%","type":"\ud800"}`))
	f.Add("a/b", []byte(`{"project":{"name":"x"},"type":"y"}`))
	f.Add("gerrit", []byte(`null`))
	f.Fuzz(func(t *testing.T, base string, event []byte) {
		got, err := Topic(base, event)
		if err != nil {
			return
		}
		if !topic.ValidName(got) {
			t.Fatalf("Topic(%q, %q) = %q: not a valid topic name", base, event, got)
		}
		if !strings.HasPrefix(got, base+"/") {
			t.Fatalf("Topic(%q, ...) = %q: base lost", base, got)
		}
	})
}
