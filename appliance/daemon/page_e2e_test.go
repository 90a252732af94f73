package daemon_test

import (
	"html"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var pageClient = &http.Client{Timeout: 30 * time.Second}

func fetchPage(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	r, err := pageClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r, string(b)
}

// The page at / on the websocket listener, as a client without JavaScript
// sees it: the instructions are in the HTML with this daemon's own host and
// ports, and [page] title and hostname change it on reload. The websocket
// paths still speak MQTT.
func TestPageWithoutJavaScript(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	base := "http://" + d.addr["ws"]
	wsPort := strconv.Itoa(portOf(t, d.addr["ws"]))
	mqttPort := strconv.Itoa(portOf(t, d.addr["mqtt"]))

	r, body := fetchPage(t, base+"/")
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	page := html.UnescapeString(body)
	for _, want := range []string{
		"<title>firehose</title>",
		"mosquitto_sub -h 127.0.0.1 -p " + mqttPort + " -t 'zuul/#' -v",
		"mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)",
		"def on_connect(client, userdata, flags, reason_code, properties):",
		`client.connect("127.0.0.1", ` + mqttPort + `)`,
		`mqtt.connect("ws://127.0.0.1:` + wsPort + `/mqtt")`,
		"curl -N 'http://127.0.0.1:" + wsPort + "/v0/events/stream?filter=zuul/%23'",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Its assets come from the same listener, cached for good.
	for _, m := range regexp.MustCompile(`(?:href|src)="(/static/[^"]+)"`).FindAllStringSubmatch(body, -1) {
		r, b := fetchPage(t, base+m[1])
		if r.StatusCode != 200 || len(b) == 0 || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s: %d, %d bytes, Cache-Control %q", m[1], r.StatusCode, len(b), r.Header.Get("Cache-Control"))
		}
	}
	if r, _ := fetchPage(t, base+"/mqtt"); r.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("GET /mqtt without upgrade: %d, want 426", r.StatusCode)
	}
	if r, _ := fetchPage(t, base+"/nothing-here"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %d, want 404", r.StatusCode)
	}

	// MQTT over websockets on / and /mqtt is unchanged.
	root := subscribe(t, "ws://"+d.addr["ws"]+"/", "zuul/#")
	mq := subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul/#")
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/page", "hi")
	root.expect("zuul/page", "hi")
	mq.expect("zuul/page", "hi")

	// The operator names the page and the host clients should use.
	d.writeConfig(d.configText(daemonOpts{extra: "[page]\ntitle = \"Example <bus>\"\nhostname = \"firehose.example.org\"\n"}, zuulPublisher(t)))
	if out, code := d.run("reload", "--config", d.cfgPath); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	_, body = fetchPage(t, base+"/")
	page = html.UnescapeString(body)
	for _, want := range []string{
		"<title>Example <bus></title>",
		"mosquitto_sub -h firehose.example.org -p " + mqttPort,
		"ws://firehose.example.org:" + wsPort + "/mqtt",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("after reload, the page lacks %q", want)
		}
	}
	if strings.Contains(body, "<bus>") {
		t.Error("the title is not escaped")
	}
}
