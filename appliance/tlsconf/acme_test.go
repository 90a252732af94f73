package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

// obtainTimeout bounds one certificate order against the in-process Pebble;
// it takes a few seconds on an idle machine.
const obtainTimeout = 60 * time.Second

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

func acmeConfigBody(p *tlstest.Pebble, websocket, websocketTLS string) string {
	return fmt.Sprintf("websocket = %q\nwebsocket_tls = %q\n[tls]\nmode = \"acme\"\ndomains = [\"localhost\"]\nemail = \"ops@firehose.test\"\nacme_ca = %q\nacme_ca_root = %q\n",
		websocket, websocketTLS, p.DirectoryURL, p.CARootFile)
}

// waitCert waits until m serves a certificate, failing on timeout or on the
// first ACME error (certmagic would retry only minutes later).
func waitCert(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(obtainTimeout)
	for len(m.Status().Certificates) == 0 {
		if e := m.Status().LastACMEError; e != nil {
			t.Fatalf("obtaining failed: %s", e.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate after %v; problems: %q", obtainTimeout, m.Problems())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkServedByPebble proves TLSConfig serves the obtained certificate to a
// client that trusts only Pebble's root.
func checkServedByPebble(t *testing.T, m *Manager, p *tlstest.Pebble) *x509.Certificate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, tls.NewListener(ln, m.TLSConfig()))
	c := dial(t, ln.Addr().String(), p.Roots)
	echo(t, c, "over an ACME certificate")
	leaf := c.ConnectionState().PeerCertificates[0]
	st := m.Status()
	if st.Mode != "acme" || len(st.Certificates) != 1 || len(st.Pending) != 0 || st.ACMECA != p.DirectoryURL {
		t.Fatalf("status = %+v", st)
	}
	sc := st.Certificates[0]
	if len(sc.Names) != 1 || sc.Names[0] != "localhost" || !strings.Contains(sc.Issuer, "Pebble") || !sc.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("certificate status = %+v, served leaf not after %v", sc, leaf.NotAfter)
	}
	if p := m.Problems(); p != nil {
		t.Errorf("Problems() = %q, want none", p)
	}
	return leaf
}

// statusRecorder notes the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

func TestACMEHTTP01(t *testing.T) {
	port80 := tlstest.ListenLocalhost(t) // stands in for the plain websocket listener
	p := tlstest.StartPebble(t, port(port80), 1)
	stateDir := t.TempDir()
	// websocket_tls off: no TLS-ALPN-01, so the order can only pass over HTTP-01.
	c := parseConfig(t, stateDir, acmeConfigBody(p, port80.Addr().String(), ""))
	if err := Check(c); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, c)

	websocket := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "websocket "+r.URL.Path) })
	var answered atomic.Int32 // challenge requests our handler answered with 200
	h := m.HTTPHandler(websocket)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		h.ServeHTTP(rec, r)
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") && rec.code == 200 {
			answered.Add(1)
		}
	})}
	go srv.Serve(port80)
	t.Cleanup(func() { srv.Close() })

	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitCert(t, m)
	if answered.Load() == 0 {
		t.Fatal("a certificate was issued but no HTTP-01 challenge went through HTTPHandler on our listener")
	}

	// Everything else, unknown challenge tokens included, reaches the wrapped handler.
	base := "http://" + port80.Addr().String()
	for _, path := range []string{"/mqtt", "/", "/.well-known/acme-challenge/unknown-token"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "websocket "+path {
			t.Errorf("GET %s: %d %q, want the websocket handler", path, resp.StatusCode, body)
		}
	}

	leaf := checkServedByPebble(t, m, p)
	checkValidatedBy(t, p, leaf, "http-01")

	// A renewal that fails (the CA is gone) keeps the certificate serving and
	// shows in status.
	p.Stop()
	src := (*m.src.Load()).(*acmeSource)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := src.magic.RenewCertSync(ctx, "localhost", true); err == nil {
		t.Fatal("renewal succeeded with the CA down")
	}
	st := m.Status()
	if st.LastACMEError == nil || st.LastACMEError.Domain != "localhost" || !st.LastACMEError.Renewal || st.LastACMEError.Error == "" {
		t.Fatalf("status after failed renewal: %+v", st.LastACMEError)
	}
	probs := strings.Join(m.Problems(), "|")
	if !strings.HasPrefix(probs, "tls: acme: localhost: ") {
		t.Errorf("Problems() = %q, want the ACME error", probs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, tls.NewListener(ln, m.TLSConfig()))
	again := dial(t, ln.Addr().String(), p.Roots)
	if got := peerSerial(again); got.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after failed renewal served serial %v, want the current %v", got, leaf.SerialNumber)
	}

	// A restarted daemon serves the certificate from state_dir, CA or not.
	m.Close()
	m2, err := New(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitCert(t, m2)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, tls.NewListener(ln2, m2.TLSConfig()))
	if got := peerSerial(dial(t, ln2.Addr().String(), p.Roots)); got.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after restart served serial %v, want %v from storage", got, leaf.SerialNumber)
	}
}

func TestACMETLSALPN01(t *testing.T) {
	port443 := tlstest.ListenLocalhost(t) // stands in for the websocket_tls listener
	p := tlstest.StartPebble(t, 1, port(port443))
	stateDir := t.TempDir()
	// websocket off: no HTTP-01, so the order can only pass over TLS-ALPN-01.
	// websocket_tls as an operator writes it; the real socket is told below.
	c := parseConfig(t, stateDir, acmeConfigBody(p, "", ":443"))
	m := newManager(t, c)
	m.SetListenerAddrs(nil, port443.Addr())

	var challenges atomic.Int32 // handshakes that negotiated acme-tls/1 on our listener
	ln := tls.NewListener(port443, m.TLSConfig())
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tc := conn.(*tls.Conn)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if tc.Handshake() == nil && tc.ConnectionState().NegotiatedProtocol == "acme-tls/1" {
				challenges.Add(1)
			}
			tc.Close()
		}
	}()

	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitCert(t, m)
	if challenges.Load() == 0 {
		t.Fatal("a certificate was issued but no TLS-ALPN-01 handshake reached our listener")
	}
	checkValidatedBy(t, p, checkServedByPebble(t, m, p), "tls-alpn-01")
}

// checkValidatedBy asks Pebble which challenge authorized leaf's order.
func checkValidatedBy(t *testing.T, p *tlstest.Pebble, leaf *x509.Certificate, want string) {
	t.Helper()
	got, err := p.ValidatedBy(leaf.SerialNumber)
	if err != nil || len(got) != 1 || got["localhost"] != want {
		t.Errorf("Pebble says the order was validated by %v (%v), want localhost: %s", got, err, want)
	}
}

func TestCheckACME(t *testing.T) {
	dir := t.TempDir()
	notPEM := tlstest.WriteFile(t, dir, "roots.txt", []byte("no certificates here\n"))
	for _, tc := range []struct {
		name, body, want string
	}{
		{"good", "[tls]\nmode = \"acme\"\ndomains = [\"example.org\"]\nemail = \"a@example.org\"\n", ""},
		{"badroot", fmt.Sprintf("[tls]\nmode = \"acme\"\ndomains = [\"example.org\"]\nemail = \"a@example.org\"\nacme_ca_root = %q\n", notPEM),
			"firehose.toml:7: tls.acme_ca_root: " + notPEM + " holds no PEM certificate"},
		{"nolisteners", "websocket = \"\"\nwebsocket_tls = \"\"\n[tls]\nmode = \"acme\"\ndomains = [\"example.org\"]\nemail = \"a@example.org\"\n",
			"firehose.toml:6: tls.mode: \"acme\" needs broker.websocket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(parseConfig(t, dir, tc.body))
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUpdateACME needs no CA: nothing is started, so nothing is contacted.
func TestUpdateACME(t *testing.T) {
	dir := t.TempDir()
	body := "[tls]\nmode = \"acme\"\ndomains = [\"example.org\"]\nemail = \"%s\"\nacme_ca = \"https://127.0.0.1:9/dir\"\n"
	m, err := New(parseConfig(t, dir, fmt.Sprintf(body, "a@example.org")), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	first := *m.src.Load()
	if err := m.Update(parseConfig(t, dir, fmt.Sprintf(body, "a@example.org"))); err != nil {
		t.Fatal(err)
	}
	if *m.src.Load() != first {
		t.Error("an unchanged ACME section restarted certmagic")
	}
	if err := m.Update(parseConfig(t, dir, fmt.Sprintf(body, "b@example.org"))); err != nil {
		t.Fatal(err)
	}
	if *m.src.Load() == first {
		t.Error("a changed email did not rebuild the ACME issuer")
	}
	st := m.Status()
	if st.Mode != "acme" || len(st.Pending) != 1 || st.Pending[0] != "example.org" || st.ACMECA != "https://127.0.0.1:9/dir" {
		t.Errorf("status = %+v", st)
	}
	if got := strings.Join(m.Problems(), "|"); got != "tls: no certificate yet for example.org" {
		t.Errorf("Problems() = %q", got)
	}

	// Both modes keep the same listeners, so switching between them is a reload.
	ca := tlstest.NewCA(t)
	cp, kp, _ := ca.Issue(t, 30*24*time.Hour)
	if err := m.Update(filesConfig(t, dir, tlstest.WriteFile(t, dir, "c.pem", cp), tlstest.WriteFile(t, dir, "k.pem", kp))); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Mode != "files" || len(st.Certificates) != 1 || m.Problems() != nil {
		t.Errorf("after acme->files: status %+v, problems %q", st, m.Problems())
	}
}

func TestListenHost(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, tc := range []struct {
		ws, wss net.Addr
		want    challengePorts
	}{
		{tcp("127.0.0.1:80"), nil, challengePorts{host: "127.0.0.1", http: 80}},
		{nil, tcp("[::1]:443"), challengePorts{host: "::1", tlsALPN: 443}},
		{tcp("[::]:80"), tcp("[::]:443"), challengePorts{http: 80, tlsALPN: 443}},
		{tcp("0.0.0.0:80"), tcp("0.0.0.0:443"), challengePorts{http: 80, tlsALPN: 443}},
		{tcp("192.0.2.1:80"), tcp("192.0.2.1:443"), challengePorts{host: "192.0.2.1", http: 80, tlsALPN: 443}},
		{tcp("192.0.2.1:80"), tcp("192.0.2.2:443"), challengePorts{http: 80, tlsALPN: 443}},
		{(*net.TCPAddr)(nil), tcp("192.0.2.2:443"), challengePorts{host: "192.0.2.2", tlsALPN: 443}},
	} {
		m := &Manager{}
		m.SetListenerAddrs(tc.ws, tc.wss)
		if *m.ports != tc.want {
			t.Errorf("SetListenerAddrs(%v, %v) = %+v, want %+v", tc.ws, tc.wss, *m.ports, tc.want)
		}
	}
	for _, tc := range []struct {
		ws, wss string
		want    challengePorts
	}{
		{":80", ":443", challengePorts{http: 80, tlsALPN: 443}},
		{"127.0.0.1:8080", "", challengePorts{host: "127.0.0.1", http: 8080}},
		{"", "", challengePorts{}},
	} {
		c := &config.Config{Broker: config.Broker{Websocket: tc.ws, WebsocketTLS: tc.wss}}
		if got := (&Manager{}).challengePorts(c); got != tc.want {
			t.Errorf("config %q %q: %+v, want %+v", tc.ws, tc.wss, got, tc.want)
		}
	}
}
