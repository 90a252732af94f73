package daemon_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Expressions the browser test polls in the page.
const (
	jsTopics = `[...document.querySelectorAll("#events .event .topic")].map((e) => e.textContent)`
	jsState  = `document.getElementById("stream-state").textContent`
)

// jsHasTopic is true once the list shows an event on topic.
func jsHasTopic(topic string) string {
	return jsTopics + `.includes(` + js(topic) + `)`
}

// The page in a real browser, through the real daemon with the journal on:
// it shows history and live events published by mosquitto_pub, newest
// first, payloads pretty-printed and never parsed as HTML; the filter
// narrows them; pause holds them; the list stays bounded; the status line
// fills in; nothing is requested from another origin and nothing breaks the
// Content-Security-Policy. A screenshot is kept.
func TestPageInBrowser(t *testing.T) {
	b := startBrowser(t)
	d := startDaemon(t, daemonOpts{extra: "[journal]\nenabled = true\n\n[page]\ntitle = \"Browser test bus\"\n"})
	base := "http://" + d.addr["ws"]
	pub := func(topic, payload string) {
		t.Helper()
		if code, out := mosquittoPub(t, d.addr["mqtt"], "-u", "zuul", "-P", zuulPass, "-q", "1", "-t", topic, "-m", payload); code != 0 {
			t.Fatalf("mosquitto_pub %s: exit %d: %s", topic, code, out)
		}
	}

	// History: published before the page opens, shown when it does.
	pub("zuul/history/1", `{"change":1}`)
	var status int
	b.must("goto", map[string]any{"url": base + "/"}, &status)
	if status != 200 {
		t.Fatalf("GET /: %d", status)
	}
	b.wait("the stream to open", jsState+` === "live"`, nil)
	b.wait("the event published before the page opened", jsHasTopic("zuul/history/1"), nil)

	// Live: JSON pretty-printed, text as text, HTML inert.
	pub("zuul/build/1", `{"result":"SUCCESS","job":{"name":"tox-py311","voting":true}}`)
	pub("zuul/deploy/1", "plain text, not JSON")
	pub("zuul/deploy/2", `<img src=x onerror="document.title='pwned'">`)
	b.wait("the live events", jsHasTopic("zuul/deploy/2"), nil)
	var topics []string
	b.must("eval", map[string]any{"expr": jsTopics}, &topics)
	if want := []string{"zuul/deploy/2", "zuul/deploy/1", "zuul/build/1", "zuul/history/1"}; strings.Join(topics, " ") != strings.Join(want, " ") {
		t.Errorf("the list shows %q, want newest first %q", topics, want)
	}
	var payloads []string
	b.must("eval", map[string]any{"expr": `[...document.querySelectorAll("#events .event .payload")].map((e) => e.textContent)`}, &payloads)
	if len(payloads) == 4 {
		if want := "{\n  \"result\": \"SUCCESS\",\n  \"job\": {\n    \"name\": \"tox-py311\",\n    \"voting\": true\n  }\n}"; payloads[2] != want {
			t.Errorf("JSON payload shown as\n%s\nwant\n%s", payloads[2], want)
		}
		if payloads[1] != "plain text, not JSON" || payloads[0] != `<img src=x onerror="document.title='pwned'">` {
			t.Errorf("text payloads shown as %q", payloads[:2])
		}
	}
	var injected bool
	b.must("eval", map[string]any{"expr": `document.querySelector("#events img") !== null || document.title === "pwned"`}, &injected)
	if injected {
		t.Error("a payload was parsed as HTML")
	}

	// The status line: clients, events per minute, the journal's span,
	// refreshed while the page is open (every 5 s).
	var line string
	b.wait("the status line", `(() => { const s = document.getElementById("status"); return !s.hidden && /events\/min/.test(s.textContent) && /journal #1–#4\b/.test(s.textContent) && s.textContent; })()`, &line)
	t.Logf("status line: %s", line)
	b.screenshot("page-in-browser.png")

	// The filter narrows the stream: deploy/3 is published before build/2,
	// so once build/2 shows, deploy/3 would have shown if it passed.
	b.must("fill", map[string]any{"selector": "#filter", "value": "zuul/build/#"}, nil)
	b.must("press", map[string]any{"selector": "#filter", "key": "Enter"}, nil)
	b.wait("the filtered stream to open", jsState+` === "live" && !`+jsHasTopic("zuul/deploy/2"), nil)
	pub("zuul/deploy/3", `{"n":3}`)
	pub("zuul/build/2", `{"n":2}`)
	b.wait("the filtered live event", jsHasTopic("zuul/build/2"), nil)
	b.must("eval", map[string]any{"expr": jsTopics}, &topics)
	for _, tp := range topics {
		if !strings.HasPrefix(tp, "zuul/build/") {
			t.Errorf("with filter zuul/build/#, the list shows %s (all: %q)", tp, topics)
		}
	}
	var search string
	b.must("eval", map[string]any{"expr": `location.search`}, &search)
	if search != "?filter=zuul%2Fbuild%2F%23" {
		t.Errorf("the page's URL keeps the filter as %q", search)
	}

	// Pause holds new events until resumed.
	b.must("click", map[string]any{"selector": "#pause"}, nil)
	pub("zuul/build/3", `{"n":3}`)
	b.wait("the paused count", `document.getElementById("pause").textContent === "Resume (1 new)"`, nil)
	var shown bool
	b.must("eval", map[string]any{"expr": jsHasTopic("zuul/build/3")}, &shown)
	if shown {
		t.Error("an event was shown while paused")
	}
	b.must("click", map[string]any{"selector": "#pause"}, nil)
	b.wait("the held event after resume", jsTopics+`[0] === "zuul/build/3"`, nil)

	// The list stays bounded: 210 more events leave the newest 200.
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	for i := 0; i < 210; i++ {
		if err := wait(c.Publish(fmt.Sprintf("zuul/build/many/%d", i), 1, false, fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	b.wait("the last of 210 events", jsTopics+`[0] === "zuul/build/many/209"`, nil)
	var n int
	b.must("eval", map[string]any{"expr": `document.querySelectorAll("#events .event").length`}, &n)
	if n != 200 {
		t.Errorf("the list holds %d events, want 200", n)
	}

	b.checkClean(base)

	// A filter the API refuses: the page says why (last, as the browser
	// logs the refused stream as an error).
	b.must("fill", map[string]any{"selector": "#filter", "value": "zuul/#/x"}, nil)
	b.must("click", map[string]any{"selector": "#controls button[type=submit]"}, nil)
	b.wait("the refusal", jsState+`.startsWith("stream refused: ") && `+jsState+`.includes("not a valid MQTT topic filter")`, nil)
}

// EventSource, the browser's own SSE client, reads the journal's stream:
// history then live, each message's id its sequence number.
func TestEventSourceInBrowser(t *testing.T) {
	b := startBrowser(t)
	d := startDaemon(t, daemonOpts{extra: "[journal]\nenabled = true\n"})
	base := "http://" + d.addr["ws"]
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	pub := func(topic, payload string) {
		t.Helper()
		if err := wait(c.Publish(topic, 1, false, payload)); err != nil {
			t.Fatal(err)
		}
	}
	pub("zuul/es/1", `{"n":1}`)
	pub("zuul/other", `{"n":0}`)
	pub("zuul/es/2", "text")

	b.must("goto", map[string]any{"url": base + "/"}, nil)
	b.must("eval", map[string]any{"expr": `(() => {
		window.got = [];
		const es = new EventSource("/v0/events/stream?filter=" + encodeURIComponent("zuul/es/#") + "&since=1");
		es.onmessage = (m) => window.got.push({id: m.lastEventId, ev: JSON.parse(m.data)});
		window.es = es;
		return true;
	})()`}, nil)
	b.wait("the history", `window.got.length >= 2`, nil)
	pub("zuul/es/3", `[3]`)
	type got struct {
		ID string `json:"id"`
		Ev struct {
			Seq           uint64          `json:"seq"`
			Topic         string          `json:"topic"`
			Payload       json.RawMessage `json:"payload"`
			PayloadBase64 string          `json:"payload_base64"`
		} `json:"ev"`
	}
	var all []got
	b.wait("the live message", `window.got.length >= 3 && window.got`, &all)
	if len(all) != 3 {
		t.Fatalf("EventSource got %d messages: %+v", len(all), all)
	}
	var prev uint64
	for i, g := range all {
		if g.ID != fmt.Sprint(g.Ev.Seq) || g.Ev.Seq <= prev {
			t.Errorf("message %d: id %q, seq %d after %d", i, g.ID, g.Ev.Seq, prev)
		}
		prev = g.Ev.Seq
		if want := fmt.Sprintf("zuul/es/%d", i+1); g.Ev.Topic != want {
			t.Errorf("message %d: topic %s, want %s", i, g.Ev.Topic, want)
		}
	}
	if string(all[0].Ev.Payload) != `{"n":1}` || all[1].Ev.PayloadBase64 != "dGV4dA==" || string(all[2].Ev.Payload) != `[3]` {
		t.Errorf("payloads: %s, %q, %s", all[0].Ev.Payload, all[1].Ev.PayloadBase64, all[2].Ev.Payload)
	}
	b.checkClean(base)
}

// With the journal off the page has no live view, but its status line and
// instructions work and nothing on it fails.
func TestPageInBrowserWithoutJournal(t *testing.T) {
	b := startBrowser(t)
	d := startDaemon(t, daemonOpts{extra: "[journal]\nenabled = false\n"})
	base := "http://" + d.addr["ws"]
	b.must("goto", map[string]any{"url": base + "/"}, nil)
	b.wait("the status line", `/no journal/.test(document.getElementById("status").textContent)`, nil)
	var live bool
	b.must("eval", map[string]any{"expr": `document.getElementById("live-ui") !== null`}, &live)
	if live {
		t.Error("a live view without a journal")
	}
	b.checkClean(base)
}
