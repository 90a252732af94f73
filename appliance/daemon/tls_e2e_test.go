package daemon_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

// allSockets are the four listeners systemd hands over when TLS is on.
var allSockets = []string{"mqtt", "ws", "mqtts", "wss"}

// acmeWait bounds one certificate order against the in-process Pebble
// through the daemon; it takes a few seconds on an idle machine.
const acmeWait = 90 * time.Second

// localhostAddr is addr with its host replaced by "localhost", the name the
// test certificates are for.
func localhostAddr(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort("localhost", port)
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// servedLeaf handshakes with addr as a client that trusts only roots and
// checks the name "localhost", and returns the certificate served.
func servedLeaf(t *testing.T, addr string, roots *x509.CertPool, protos ...string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: protos})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// checkServed asserts that mqtts and wss both serve the certificate with
// serial want to a client trusting only roots.
func checkServed(t *testing.T, d *daemon, roots *x509.CertPool, want *x509.Certificate) {
	t.Helper()
	for _, s := range []struct {
		name   string
		protos []string
	}{
		{"mqtts", nil},
		{"wss", []string{"http/1.1"}}, // as a websocket client offers
	} {
		if got := servedLeaf(t, d.addr[s.name], roots, s.protos...); got.SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Errorf("%s serves serial %x, want %x", s.name, got.SerialNumber, want.SerialNumber)
		}
	}
}

func tlsOpts(url string, roots *x509.CertPool, user, pass string) *paho.ClientOptions {
	return pahoOpts(url, user, pass).SetTLSConfig(&tls.Config{RootCAs: roots})
}

// subscribeTLS is subscribe over mqtts:// or wss:// trusting only roots.
func subscribeTLS(t *testing.T, url string, roots *x509.CertPool, filter string) *sub {
	t.Helper()
	s := &sub{t: t, msgs: make(chan paho.Message, 1000)}
	o := tlsOpts(url, roots, "", "").SetConnectionLostHandler(func(paho.Client, error) { s.lost.Add(1) })
	s.c = connect(t, o)
	if err := wait(s.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { s.msgs <- m })); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return s
}

// statusJSON runs `firehosectl status --json`, which exits 1 while degraded
// (no certificate yet) but prints the status all the same.
func (d *daemon) statusJSON() *apitype.Status {
	d.t.Helper()
	out, err := exec.Command(binary, "status", "--json", "--socket", d.ctl.Socket).Output()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
		d.t.Fatalf("status --json: %v: %s", err, out)
	}
	var st apitype.Status
	if err := json.Unmarshal(out, &st); err != nil {
		d.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

// logLine returns the first daemon log line holding all of parts, or "".
func (d *daemon) logLine(parts ...string) string {
lines:
	for _, l := range strings.Split(d.log.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue lines
			}
		}
		return l
	}
	return ""
}

func TestTLSFilesServeAndReloadKeepsConnections(t *testing.T) {
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	caFile := tlstest.WriteFile(t, dir, "ca.pem", ca.PEM())
	certFile, keyFile, leaf1 := ca.IssueFiles(t, dir, "server", 90*24*time.Hour)
	d := startDaemon(t, daemonOpts{
		sockets: allSockets,
		host:    tlstest.LocalhostIP(t), // clients below connect to "localhost"
		extra:   fmt.Sprintf("[tls]\nmode = \"files\"\ncert_file = %q\nkey_file = %q\n", certFile, keyFile),
	})
	mqtts, wss := localhostAddr(d.addr["mqtts"]), "wss://"+localhostAddr(d.addr["wss"])+"/mqtt"
	checkServed(t, d, ca.Pool, leaf1)

	mq := mosquittoSub(t, mqtts, "--cafile", caFile, "-t", "zuul/#")
	ws := subscribeTLS(t, wss, ca.Pool, "zuul/#")
	eventually(t, "both subscriptions", func() bool { return d.status().Subscriptions >= 2 })

	if code, out := mosquittoPub(t, mqtts, "--cafile", caFile, "-u", "zuul", "-P", zuulPass, "-t", "zuul/tls/1", "-m", "first"); code != 0 {
		t.Fatalf("mosquitto_pub over mqtts: exit %d: %s", code, out)
	}
	mq.expect("zuul/tls/1 first")
	ws.expect("zuul/tls/1", "first")

	// The operator overwrites the files in place and reloads.
	_, _, leaf2 := ca.IssueFiles(t, dir, "server", 60*24*time.Hour)
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	checkServed(t, d, ca.Pool, leaf2)
	st := d.statusJSON()
	if st.TLS == nil || st.TLS.Mode != "files" || len(st.TLS.Certificates) != 1 || !st.TLS.Certificates[0].NotAfter.Equal(leaf2.NotAfter) || st.State != apitype.StateOK {
		t.Errorf("status after reload: state %s, tls %+v; want files mode serving the new certificate", st.State, st.TLS)
	}

	// Connections made before the reload carry on; new ones work too.
	fresh := subscribeTLS(t, wss, ca.Pool, "zuul/#")
	eventually(t, "the new subscription", func() bool { return d.status().Subscriptions >= 3 })
	pub := connect(t, tlsOpts(wss, ca.Pool, "zuul", zuulPass))
	if err := wait(pub.Publish("zuul/tls/2", 1, false, "second")); err != nil {
		t.Fatalf("publish over wss: %v", err)
	}
	mq.expect("zuul/tls/2 second")
	ws.expect("zuul/tls/2", "second")
	fresh.expect("zuul/tls/2", "second")
	if n := ws.lost.Load(); n != 0 {
		t.Errorf("the wss subscriber lost its connection %d times across the reload", n)
	}
}

// acmeTOML is a [tls] section ordering a certificate for localhost from p.
func acmeTOML(p *tlstest.Pebble) string {
	return fmt.Sprintf("[tls]\nmode = \"acme\"\ndomains = [\"localhost\"]\nemail = \"ops@firehose.test\"\nacme_ca = %q\nacme_ca_root = %q\n",
		p.DirectoryURL, p.CARootFile)
}

// startACME starts the daemon with all four sockets on the address Pebble
// uses for "localhost", and Pebble validating over ports(d.addr).
func startACME(t *testing.T, ports func(t *testing.T, addr map[string]string) (httpPort, tlsPort int)) (*daemon, *tlstest.Pebble) {
	t.Helper()
	var p *tlstest.Pebble
	d := startDaemon(t, daemonOpts{
		sockets: allSockets,
		host:    tlstest.LocalhostIP(t),
		// As the packaged config has them; the handed-over sockets win.
		broker: "websocket = \":80\"\nwebsocket_tls = \":443\"\n",
		extraFor: func(addr map[string]string) string {
			httpPort, tlsPort := ports(t, addr)
			p = tlstest.StartPebble(t, httpPort, tlsPort)
			return acmeTOML(p)
		},
	})
	return d, p
}

// waitACMECert polls `firehosectl status --json` until the daemon serves a
// certificate and returns its status entry.
func waitACMECert(t *testing.T, d *daemon, p *tlstest.Pebble) apitype.TLSCertificate {
	t.Helper()
	deadline := time.Now().Add(acmeWait)
	for {
		st := d.statusJSON()
		if st.TLS == nil || st.TLS.Mode != "acme" || st.TLS.ACMECA != p.DirectoryURL {
			t.Fatalf("tls status = %+v, want acme from %s", st.TLS, p.DirectoryURL)
		}
		if len(st.TLS.Certificates) > 0 {
			if len(st.TLS.Pending) != 0 || st.State != apitype.StateOK {
				t.Errorf("with the certificate: state %s %q, pending %q", st.State, st.Reasons, st.TLS.Pending)
			}
			return st.TLS.Certificates[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate after %v; tls status %+v, last error %+v", acmeWait, st.TLS, st.TLS.LastACMEError)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkACMECert proves the certificate the daemon reports is Pebble's, is
// served on both TLS sockets, and was validated by challenge want (from
// Pebble's records, and from the daemon's log of what it answered).
func checkACMECert(t *testing.T, d *daemon, p *tlstest.Pebble, want string) {
	t.Helper()
	sc := waitACMECert(t, d, p)
	leaf := servedLeaf(t, d.addr["mqtts"], p.Roots) // verifies the chain to Pebble's root
	checkServed(t, d, p.Roots, leaf)
	if len(sc.Names) != 1 || sc.Names[0] != "localhost" || !strings.Contains(sc.Issuer, "Pebble") || !sc.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("status certificate %+v; served leaf issued by %q, not after %v", sc, leaf.Issuer.CommonName, leaf.NotAfter)
	}
	got, err := p.ValidatedBy(leaf.SerialNumber)
	if err != nil || len(got) != 1 || got["localhost"] != want {
		t.Errorf("Pebble validated the order by %v (%v), want localhost: %s", got, err, want)
	}
	if l := d.logLine("served key authentication", want); l == "" {
		t.Errorf("the daemon's log shows no %s answer", want)
	} else {
		t.Logf("daemon: %s", l)
	}
}

func TestTLSACMEHTTP01OnWebsocketSocket(t *testing.T) {
	// Pebble's TLS-ALPN-01 checks go to a port where nothing listens, so
	// only HTTP-01 on the daemon's ws socket can pass.
	d, p := startACME(t, func(t *testing.T, addr map[string]string) (int, int) {
		return portOf(t, addr["ws"]), tlstest.RefusedPort(t)
	})
	// MQTT over websockets on the socket that answers the CA.
	ws := subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul/#")
	checkACMECert(t, d, p, "http-01")

	mq := mosquittoSub(t, localhostAddr(d.addr["mqtts"]), "--cafile", p.RootFile, "-t", "zuul/#")
	wss := subscribeTLS(t, "wss://"+localhostAddr(d.addr["wss"])+"/mqtt", p.Roots, "zuul/#")
	eventually(t, "three subscriptions", func() bool { return d.status().Subscriptions >= 3 })
	publish(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul", zuulPass, "zuul/acme", "issued")
	ws.expect("zuul/acme", "issued")
	mq.expect("zuul/acme issued")
	wss.expect("zuul/acme", "issued")
	if n := ws.lost.Load(); n != 0 {
		t.Errorf("the ws subscriber lost its connection %d times", n)
	}
}

func TestTLSACMETLSALPN01OnWSSSocket(t *testing.T) {
	// Pebble's HTTP-01 checks go to a port where nothing listens, so only
	// TLS-ALPN-01 on the daemon's wss socket can pass.
	d, p := startACME(t, func(t *testing.T, addr map[string]string) (int, int) {
		return tlstest.RefusedPort(t), portOf(t, addr["wss"])
	})
	checkACMECert(t, d, p, "tls-alpn-01")

	mq := mosquittoSub(t, localhostAddr(d.addr["mqtts"]), "--cafile", p.RootFile, "-t", "zuul/#")
	wss := subscribeTLS(t, "wss://"+localhostAddr(d.addr["wss"])+"/mqtt", p.Roots, "zuul/#")
	eventually(t, "two subscriptions", func() bool { return d.status().Subscriptions >= 2 })
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/acme", "issued")
	mq.expect("zuul/acme issued")
	wss.expect("zuul/acme", "issued")
}

func TestTLSOffClosesHandedOverTLSSocket(t *testing.T) {
	d := startDaemon(t, daemonOpts{sockets: []string{"mqtt", "ws", "mqtts"}})
	// READY=1 came after the sockets were sorted out, and the daemon held
	// the only descriptor of the mqtts socket: it is gone, not just idle.
	c, err := net.DialTimeout("tcp", d.addr["mqtts"], 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s (mqtts) still accepts connections with TLS off", d.addr["mqtts"])
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing the closed mqtts socket: %v, want connection refused", err)
	}
	l := d.logLine("closing a socket systemd handed over", "name=mqtts", "address="+d.addr["mqtts"])
	if l == "" || !strings.Contains(l, "[tls] mode is not") {
		t.Fatalf("no log line saying why mqtts was closed; log:\n%s", d.log.String())
	}
	st := d.status()
	for _, li := range st.Listeners {
		if li.Name == "mqtts" {
			t.Errorf("status lists an mqtts listener with TLS off: %+v", li)
		}
	}
	if st.TLS == nil || st.TLS.Mode != "off" {
		t.Errorf("tls status = %+v, want mode off", st.TLS)
	}
	// The other sockets serve as usual.
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	publish(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul", zuulPass, "zuul/plain", "still here")
	s.expect("zuul/plain", "still here")
}
