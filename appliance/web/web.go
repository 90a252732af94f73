// Package web owns the page served at / on the websocket listeners: what
// this bus is, how to subscribe (server-rendered, so it reads without
// JavaScript), and a live view of the journal over Server-Sent Events. Its
// HTML, CSS and JavaScript are embedded in the binary and the page makes no
// request to any other origin. It serves only its own paths; the daemon
// routes websocket upgrades and the journal's API elsewhere.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
)

// Options are what the page says about this bus. The daemon builds them from
// the config and the listeners it serves, and updates them on reload.
type Options struct {
	Title string
	// Hostname is the name the instructions use; "" = the host the visitor
	// asked for (the request's Host header, if it is a plain host name).
	Hostname string
	// Ports of the listeners; 0 = not served.
	MQTTPort, MQTTSPort, WSPort, WSSPort int
	// Topics are filters that carry events here (gerrit/#, zuul/#), shown as
	// examples; the first one is used in the commands.
	Topics []string
	// GerritTopic is the base topic of a Gerrit source, "" if none.
	GerritTopic string
	// Journal is whether the journal (and so its HTTP API) is on.
	Journal bool
}

// Handler serves the page and its assets.
type Handler struct {
	opts atomic.Pointer[Options]
}

// New returns a Handler showing o.
func New(o Options) *Handler {
	h := &Handler{}
	h.Update(o)
	return h
}

// Update replaces what the page shows; requests in flight keep the old view.
func (h *Handler) Update(o Options) {
	o.Topics = append([]string(nil), o.Topics...)
	h.opts.Store(&o)
}

// StaticPrefix is where the page's assets live: Handler serves / and the
// paths under it.
const StaticPrefix = "/static/"

//go:embed assets
var assetFS embed.FS

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// assets are served under names carrying a hash of their content, so they
// can be cached for good and a new binary's page never meets an old script.
var (
	assets   = map[string]*asset{} // by URL path
	assetURL = map[string]string{} // file name -> URL path
	index    *template.Template
)

func init() {
	for _, name := range []string{"page.css", "page.js", "favicon.svg"} {
		b, err := assetFS.ReadFile("assets/" + name)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:6])
		ext := path.Ext(name)
		url := StaticPrefix + strings.TrimSuffix(name, ext) + "." + h + ext
		ctype := mime.TypeByExtension(ext)
		if ext == ".js" {
			ctype = "text/javascript; charset=utf-8" // mime's table varies by host
		}
		assets[url] = &asset{body: b, ctype: ctype, etag: `"` + h + `"`}
		assetURL[name] = url
	}
	index = template.Must(template.New("index.html").Funcs(template.FuncMap{
		"asset": func(name string) string { return assetURL[name] },
	}).ParseFS(assetFS, "assets/index.html"))
}

// The page loads only its own scripts and styles, and talks only to its
// own origin (the journal's API). No inline script or style is allowed, so
// an injected tag would do nothing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" {
		h.serveIndex(w, r)
		return
	}
	a, ok := assets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("ETag", a.etag)
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(a.body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(a.body)
	}
}

func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := index.Execute(&buf, h.view(r)); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// The page names the host the visitor used, so caches must ask again.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Vary", "Host")
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method == http.MethodGet {
		_, _ = w.Write(buf.Bytes())
	}
}

// view is what the template renders: every command is built here, so the
// template only places text.
type view struct {
	Title  string
	Host   string // for URLs: a name, an IPv4 address, or [IPv6]
	Filter string // the example topic filter
	Topics []string

	GerritTopic         string
	Journal             bool
	MQTTPort, MQTTSPort int
	WSURL, WSSURL       string // MQTT over websockets
	HTTPBase            string // the journal's API, on the listener the page came from
	FilterQuery         string // Filter, escaped for a query string
}

func (h *Handler) view(r *http.Request) view {
	o := h.opts.Load()
	host := o.Hostname
	if host == "" {
		host = RequestHost(r.Host)
	}
	urlHost := host
	if strings.Contains(host, ":") {
		urlHost = "[" + host + "]"
	}
	v := view{
		Title:       o.Title,
		Host:        host,
		Filter:      "#",
		Topics:      o.Topics,
		GerritTopic: o.GerritTopic,
		Journal:     o.Journal,
		MQTTPort:    o.MQTTPort,
		MQTTSPort:   o.MQTTSPort,
	}
	if len(o.Topics) > 0 {
		v.Filter = o.Topics[0]
	}
	v.FilterQuery = queryEscape(v.Filter)
	if o.WSPort != 0 {
		v.WSURL = "ws://" + hostPort(urlHost, o.WSPort, 80) + "/mqtt"
	}
	if o.WSSPort != 0 {
		v.WSSURL = "wss://" + hostPort(urlHost, o.WSSPort, 443) + "/mqtt"
	}
	// The API is on the websocket listeners; point at the one the visitor
	// used, else plain HTTP.
	switch {
	case r.TLS != nil && o.WSSPort != 0:
		v.HTTPBase = "https://" + hostPort(urlHost, o.WSSPort, 443)
	case o.WSPort != 0:
		v.HTTPBase = "http://" + hostPort(urlHost, o.WSPort, 80)
	case o.WSSPort != 0:
		v.HTTPBase = "https://" + hostPort(urlHost, o.WSSPort, 443)
	}
	return v
}

func hostPort(host string, port, def int) string {
	if port == def {
		return host
	}
	return host + ":" + strconv.Itoa(port)
}

// queryEscape escapes a topic filter for a URL query, keeping the slashes
// readable in the commands people copy.
func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-._~/", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	return b.String()
}

// RequestHost returns the host part of a Host header when it is a plain
// host name or IP address, else "HOST": the header is the visitor's to
// choose, and the page repeats it only when it is harmless and plausible.
func RequestHost(hostHeader string) string {
	h := hostHeader
	if sh, _, err := net.SplitHostPort(h); err == nil {
		h = sh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip := net.ParseIP(h); ip != nil {
		if ip.To4() == nil && strings.Contains(h, "%") {
			return "HOST" // a zone means nothing to another machine
		}
		return ip.String()
	}
	if !validName(h) {
		return "HOST"
	}
	return strings.ToLower(h)
}

func validName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
