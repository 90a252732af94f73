package tlsconf

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

func listenTLS(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, tls.NewListener(ln, m.TLSConfig()))
	return ln.Addr().String()
}

func TestFilesServeReloadAndReject(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert1, key1, leaf1 := ca.Issue(t, 90*24*time.Hour)
	c := filesConfig(t, dir, tlstest.WriteFile(t, dir, "c1.pem", cert1), tlstest.WriteFile(t, dir, "k1.pem", key1))
	if err := Check(c); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, c)
	if !m.Enabled() {
		t.Fatal("Enabled() = false in files mode")
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := listenTLS(t, m)

	old := dial(t, addr, ca.Pool)
	if got := peerSerial(old); got.Cmp(leaf1.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got, leaf1.SerialNumber)
	}
	echo(t, old, "before reload")

	// Reload with a new pair: new connections get it, the old one carries on.
	cert2, key2, leaf2 := ca.Issue(t, 60*24*time.Hour)
	c2 := filesConfig(t, dir, tlstest.WriteFile(t, dir, "c2.pem", cert2), tlstest.WriteFile(t, dir, "k2.pem", key2))
	if err := m.Update(c2); err != nil {
		t.Fatalf("Update: %v", err)
	}
	fresh := dial(t, addr, ca.Pool)
	if got := peerSerial(fresh); got.Cmp(leaf2.SerialNumber) != 0 {
		t.Fatalf("after reload served serial %v, want %v", got, leaf2.SerialNumber)
	}
	echo(t, old, "after reload, old connection")
	echo(t, fresh, "after reload, new connection")

	// A pair that does not match, and a file that is not a certificate, are
	// refused by name and change nothing.
	cert3, _, _ := ca.Issue(t, 30*24*time.Hour)
	bad := map[string]*config.Config{
		"mismatch":    filesConfig(t, dir, tlstest.WriteFile(t, dir, "c3.pem", cert3), tlstest.WriteFile(t, dir, "k3.pem", key2)),
		"garbagecert": filesConfig(t, dir, tlstest.WriteFile(t, dir, "c4.pem", []byte("not a certificate\n")), tlstest.WriteFile(t, dir, "k4.pem", key2)),
	}
	wantErr := map[string]*regexp.Regexp{
		"mismatch":    regexp.MustCompile(`firehose\.toml:6: tls\.key_file: .*k3\.pem does not match the certificate in .*c3\.pem \(for localhost, 127\.0\.0\.1, ::1\)`),
		"garbagecert": regexp.MustCompile(`firehose\.toml:5: tls\.cert_file: .*c4\.pem holds no PEM certificate`),
	}
	for name, bc := range bad {
		err := m.Update(bc)
		if err == nil || !wantErr[name].MatchString(err.Error()) {
			t.Errorf("%s: Update error = %v, want match %v", name, err, wantErr[name])
		}
		if got := peerSerial(dial(t, addr, ca.Pool)); got.Cmp(leaf2.SerialNumber) != 0 {
			t.Errorf("%s: after rejected reload served serial %v, want %v", name, got, leaf2.SerialNumber)
		}
	}
	echo(t, old, "after rejected reloads")

	st := m.Status()
	if st.Mode != "files" || len(st.Certificates) != 1 {
		t.Fatalf("status = %+v", st)
	}
	sc := st.Certificates[0]
	if !slices.Equal(sc.Names, []string{"localhost", "127.0.0.1", "::1"}) || sc.Issuer != "firehose test CA" ||
		!sc.NotAfter.Equal(leaf2.NotAfter) || !strings.HasSuffix(sc.File, "c2.pem") {
		t.Errorf("certificate status = %+v", sc)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if p := m.Problems(); p != nil {
		t.Errorf("Problems() = %q, want none", p)
	}
}

func TestFilesExpiry(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	for _, tc := range []struct {
		name     string
		validFor time.Duration
		want     string
	}{
		{"healthy", 15 * 24 * time.Hour, ""},
		{"threedays", 3*24*time.Hour + time.Hour, "tls: certificate for localhost, 127.0.0.1, ::1 expires in 3 days"},
		{"hours", 5*time.Hour + time.Minute, "tls: certificate for localhost, 127.0.0.1, ::1 expires in 5 hours"},
		{"expired", -2*24*time.Hour - time.Hour, "tls: certificate for localhost, 127.0.0.1, ::1 expired 2 days ago"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, kp, _ := ca.Issue(t, tc.validFor)
			m, err := New(filesConfig(t, dir, tlstest.WriteFile(t, dir, tc.name+".c", cp), tlstest.WriteFile(t, dir, tc.name+".k", kp)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got := strings.Join(m.Problems(), "|")
			if got != tc.want {
				t.Errorf("Problems() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cp, kp, _ := ca.Issue(t, 24*time.Hour)
	cert := tlstest.WriteFile(t, dir, "cert.pem", cp)
	key := tlstest.WriteFile(t, dir, "key.pem", kp)
	_, otherKey, _ := ca.Issue(t, 24*time.Hour)
	for _, tc := range []struct {
		name       string
		cert, key  string
		wantErrRxp string
	}{
		{"good", cert, key, ""},
		{"swapped", key, cert, `:5: tls\.cert_file: .*key\.pem holds no PEM certificate`},
		{"otherkey", cert, tlstest.WriteFile(t, dir, "other.pem", otherKey), `:6: tls\.key_file: .*other\.pem does not match`},
		{"badkey", cert, tlstest.WriteFile(t, dir, "bad.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), `:6: tls\.key_file: .*bad\.pem: the private key does not parse`},
		{"badcert", tlstest.WriteFile(t, dir, "badc.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), key, `:5: tls\.cert_file: .*badc\.pem: certificate 1 does not parse`},
		{"chain", tlstest.WriteFile(t, dir, "chain.pem", append(append([]byte{}, cp...), ca.PEM()...)), key, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(filesConfig(t, dir, tc.cert, tc.key))
			switch {
			case tc.wantErrRxp == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wantErrRxp != "" && (err == nil || !regexp.MustCompile(tc.wantErrRxp).MatchString(err.Error())):
				t.Fatalf("Check error = %v, want match %s", err, tc.wantErrRxp)
			}
			var ce *config.Error
			if err != nil && !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestModeSwitchRefused(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cp, kp, _ := ca.Issue(t, 24*time.Hour)
	files := filesConfig(t, dir, tlstest.WriteFile(t, dir, "c.pem", cp), tlstest.WriteFile(t, dir, "k.pem", kp))
	off := parseConfig(t, dir, "")

	m, err := New(off, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Enabled() || m.TLSConfig() != nil || m.Problems() != nil || m.Status().Mode != "off" {
		t.Fatalf("mode off: Enabled=%v TLSConfig=%v Problems=%v Status=%+v", m.Enabled(), m.TLSConfig(), m.Problems(), m.Status())
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `reload not supported for tls.mode: old="off", new="files" (restart firehose)`
	if err := m.Update(files); err == nil || err.Error() != want {
		t.Errorf("off->files: %v, want %s", err, want)
	}
	if err := m.Update(off); err != nil {
		t.Errorf("off->off: %v", err)
	}
	m.Close()

	m, err = New(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want = `reload not supported for tls.mode: old="files", new="off" (restart firehose)`
	if err := m.Update(off); err == nil || err.Error() != want {
		t.Errorf("files->off: %v, want %s", err, want)
	}
	if m.Status().Mode != "files" {
		t.Errorf("mode after refused reload = %q", m.Status().Mode)
	}
}

func TestALPNAndVersion(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cp, kp, _ := ca.Issue(t, 24*time.Hour)
	m, err := New(filesConfig(t, dir, tlstest.WriteFile(t, dir, "c.pem", cp), tlstest.WriteFile(t, dir, "k.pem", kp)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !slices.Contains(m.TLSConfig().NextProtos, "acme-tls/1") || m.TLSConfig() != m.TLSConfig() {
		t.Fatalf("TLSConfig NextProtos = %q", m.TLSConfig().NextProtos)
	}
	addr := listenTLS(t, m)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{"mqtt"}, ""}, // unknown to us: served without ALPN, not refused
		{[]string{"h2", "http/1.1"}, "http/1.1"},
	} {
		c := dial(t, addr, ca.Pool, tc.offer...)
		if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
			t.Errorf("offer %q: negotiated %q, want %q", tc.offer, got, tc.want)
		}
		echo(t, c, "alpn")
	}
	_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("a TLS 1.1 client was served; want at least TLS 1.2")
	}
}

func TestHTTPHandlerPassesThrough(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cp, kp, _ := ca.Issue(t, 24*time.Hour)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next "+r.URL.Path) })
	for _, c := range []*config.Config{
		parseConfig(t, dir, ""),
		filesConfig(t, dir, tlstest.WriteFile(t, dir, "c.pem", cp), tlstest.WriteFile(t, dir, "k.pem", kp)),
	} {
		m, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/mqtt", "/.well-known/acme-challenge/abc"} {
			rec := httptest.NewRecorder()
			m.HTTPHandler(next).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Body.String() != "next "+path {
				t.Errorf("mode %s %s: body %q", c.TLS.Mode, path, rec.Body.String())
			}
		}
		m.Close()
	}
}

// TestReloadDuringHandshakes runs reloads against concurrent handshakes, for
// the race detector: every handshake must get one whole certificate.
func TestReloadDuringHandshakes(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	const n = 20
	configs := make([]*config.Config, n)
	for i := range configs {
		cp, kp, _ := ca.Issue(t, 24*time.Hour)
		configs[i] = filesConfig(t, dir, tlstest.WriteFile(t, dir, "c"+strconv.Itoa(i), cp), tlstest.WriteFile(t, dir, "k"+strconv.Itoa(i), kp))
	}
	m, err := New(configs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := listenTLS(t, m)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
			if err != nil {
				done <- fmt.Errorf("handshake %d: %w", i, err)
				return
			}
			c.Close()
		}
		done <- nil
	}()
	for _, c := range configs[1:] {
		if err := m.Update(c); err != nil {
			t.Fatal(err)
		}
		_ = m.Status()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("handshakes did not finish")
	}
}
