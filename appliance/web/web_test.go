package web

import (
	"crypto/tls"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

var full = Options{
	Title: "OpenDev firehose", Hostname: "firehose.example.org",
	MQTTPort: 1883, MQTTSPort: 8883, WSPort: 80, WSSPort: 443,
	Topics: []string{"gerrit/#", "zuul/#"}, GerritTopic: "gerrit", Journal: true,
}

func get(t *testing.T, h http.Handler, method, target string, mod func(*http.Request)) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The instructions are in the HTML itself, with the host and ports filled
// in, so they read without JavaScript.
func TestIndexHasTheInstructions(t *testing.T) {
	r := get(t, New(full), "GET", "/", nil)
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-cache",
		"Content-Security-Policy": csp,
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// As a reader sees it: entities decoded.
	page := html.UnescapeString(body(t, r))
	for _, want := range []string{
		"<title>OpenDev firehose</title>",
		"mosquitto_sub -h firehose.example.org -p 1883 -t 'gerrit/#' -v",
		"mosquitto_sub -h firehose.example.org -p 8883 --capath /etc/ssl/certs",
		"mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)",
		"def on_connect(client, userdata, flags, reason_code, properties):",
		`client.connect("firehose.example.org", 1883)`,
		`mqtt.connect("wss://firehose.example.org/mqtt")`,
		"<code>ws://firehose.example.org/mqtt</code>",
		"curl -N 'http://firehose.example.org/v0/events/stream?filter=gerrit/%23'",
		"curl -N 'http://firehose.example.org/v0/events/stream?filter=gerrit/%23&since=1234'",
		"Last-Event-ID: 41",
		"<code>gerrit/<project>/<event type></code>",
		"<code>zuul/#</code>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Listeners that are off are not offered; the API is on whatever websocket
// listener there is.
func TestIndexOffersOnlyWhatIsServed(t *testing.T) {
	page := body(t, get(t, New(Options{Title: "t", WSPort: 18080, Journal: true}), "GET", "/", func(r *http.Request) { r.Host = "127.0.0.1:18080" }))
	for _, absent := range []string{"mosquitto_sub", "paho", "MQTT + TLS", "wss://"} {
		if strings.Contains(page, absent) {
			t.Errorf("page offers %q though it is not served", absent)
		}
	}
	for _, want := range []string{"ws://127.0.0.1:18080/mqtt", "http://127.0.0.1:18080/v0/events/stream?filter=%23"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	page = body(t, get(t, New(Options{Title: "t", WSPort: 80, WSSPort: 443, Journal: true}), "GET", "/", func(r *http.Request) {
		r.Host = "bus.example"
		r.TLS = &tls.ConnectionState{}
	}))
	if !strings.Contains(page, "https://bus.example/v0/events/stream") {
		t.Error("a page fetched over TLS points the API at http")
	}

	// Without a journal there is no API: neither curl nor a live view.
	page = body(t, get(t, New(Options{Title: "t", MQTTPort: 1883, WSPort: 80}), "GET", "/", nil))
	for _, absent := range []string{"/v0/events", `id="live-ui"`} {
		if strings.Contains(page, absent) {
			t.Errorf("a page without a journal offers %q", absent)
		}
	}
	if !strings.Contains(page, "keeps no journal") {
		t.Error("a page without a journal does not say so")
	}
}

func TestHostFromTheRequest(t *testing.T) {
	for _, tc := range []struct{ header, host, url string }{
		{"Bus.Example:8080", "bus.example", "ws://bus.example/mqtt"},
		{"192.0.2.1", "192.0.2.1", "ws://192.0.2.1/mqtt"},
		{"[2001:db8::1]:80", "2001:db8::1", "ws://[2001:db8::1]/mqtt"},
		{"<script>alert(1)</script>", "HOST", "ws://HOST/mqtt"},
		{"a b", "HOST", "ws://HOST/mqtt"},
		{"[fe80::1%25eth0]", "HOST", "ws://HOST/mqtt"},
		{"", "HOST", "ws://HOST/mqtt"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if got := RequestHost(tc.header); got != tc.host {
				t.Errorf("RequestHost(%q) = %q, want %q", tc.header, got, tc.host)
			}
			page := body(t, get(t, New(Options{Title: "t", MQTTPort: 1883, WSPort: 80}), "GET", "/", func(r *http.Request) { r.Host = tc.header }))
			if !strings.Contains(page, "<code>"+tc.url+"</code>") || !strings.Contains(page, "-h "+tc.host+" -p 1883") {
				t.Errorf("page for Host %q lacks %s and -h %s", tc.header, tc.url, tc.host)
			}
		})
	}
}

func TestTitleIsEscapedAndUpdated(t *testing.T) {
	h := New(Options{Title: `<b>"bus"</b>`})
	page := body(t, get(t, h, "GET", "/", nil))
	if strings.Contains(page, "<b>") || !strings.Contains(page, "<title>&lt;b&gt;&#34;bus&#34;&lt;/b&gt;</title>") {
		t.Errorf("title not escaped:\n%s", page)
	}
	h.Update(Options{Title: "renamed"})
	if page := body(t, get(t, h, "GET", "/", nil)); !strings.Contains(page, "<h1>renamed</h1>") {
		t.Error("Update did not change the title")
	}
}

var (
	assetRef    = regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	externalURL = regexp.MustCompile(`https?:|wss?:|["'(]\s*//|@import`)
)

// Every reference in the page is to one of its own assets, each served with
// its type and cached for good; nothing points at another origin.
func TestAssets(t *testing.T) {
	h := New(full)
	page := body(t, get(t, h, "GET", "/", nil))
	refs := assetRef.FindAllStringSubmatch(page, -1)
	if len(refs) != 3 {
		t.Fatalf("want 3 asset references, got %v", refs)
	}
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
	for _, m := range refs {
		u := m[1]
		if !strings.HasPrefix(u, StaticPrefix) {
			t.Errorf("reference %q is not one of the page's assets", u)
			continue
		}
		r := get(t, h, "GET", u, nil)
		b := body(t, r)
		ext := u[strings.LastIndex(u, "."):]
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != types[ext] || len(b) == 0 {
			t.Errorf("%s: %d %q, %d bytes", u, r.StatusCode, r.Header.Get("Content-Type"), len(b))
		}
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", u, cc)
		}
		if ext != ".svg" && externalURL.MatchString(b) {
			t.Errorf("%s mentions %q: the page must not load from elsewhere", u, externalURL.FindString(b))
		}
		etag := r.Header.Get("ETag")
		if r := get(t, h, "GET", u, func(r *http.Request) { r.Header.Set("If-None-Match", etag) }); r.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %d", u, r.StatusCode)
		}
		if r := get(t, h, "HEAD", u, nil); r.StatusCode != 200 || body(t, r) != "" || r.ContentLength != int64(len(b)) {
			t.Errorf("HEAD %s: %d, length %d", u, r.StatusCode, r.ContentLength)
		}
	}
	for _, u := range []string{"/static/page.js", "/static/", "/static/../web.go", "/nope"} {
		if r := get(t, h, "GET", u, nil); r.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", u, r.StatusCode)
		}
	}
	if r := get(t, h, "POST", "/", nil); r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d", r.StatusCode)
	}
}

// The page builds everything from anyone's text with textContent: a
// regression to innerHTML would be a script injection from any publisher.
func TestScriptDoesNotParseHTML(t *testing.T) {
	js, err := assetFS.ReadFile("assets/page.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(js), bad) {
			t.Errorf("page.js uses %s", bad)
		}
	}
}

// FuzzRequestHost: whatever a visitor sends as Host, the page repeats only
// a host name or an address.
func FuzzRequestHost(f *testing.F) {
	for _, s := range []string{"bus.example:80", "[::1]:80", "1.2.3.4", "<x>", "", "a..b", "[fe80::1%eth0]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		h := RequestHost(header)
		if h == "HOST" {
			return
		}
		if net.ParseIP(h) == nil && !validName(h) {
			t.Fatalf("RequestHost(%q) = %q", header, h)
		}
		if strings.ContainsAny(h, "<>\"'& /\\%") {
			t.Fatalf("RequestHost(%q) = %q", header, h)
		}
	})
}
