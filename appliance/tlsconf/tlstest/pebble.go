package tlstest

import (
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/letsencrypt/pebble/v2/acme"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Pebble is a real ACME CA running in the test process.
type Pebble struct {
	// DirectoryURL is for tls.acme_ca.
	DirectoryURL string
	// CARootFile holds the root of the directory's own HTTPS certificate,
	// for tls.acme_ca_root.
	CARootFile string
	// Roots holds the root that issued certificates chain to; RootFile is
	// the same as PEM, for clients that take a CA file.
	Roots    *x509.CertPool
	RootFile string

	srv   *httptest.Server
	store *db.MemoryStore
}

// StartPebble runs Pebble whose validation authority checks HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort of the first address "localhost"
// resolves to (see LocalhostIP). A port where nothing listens makes that
// challenge type fail, which is how a test forces the other one.
func StartPebble(t testing.TB, httpPort, tlsPort int) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no random badNonce retries
	logger := log.New(LogWriter(t, ""), "pebble ", 0)

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	validator := va.New(logger, httpPort, tlsPort, false, "", store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.test"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	p := &Pebble{
		DirectoryURL: srv.URL + wfe.DirectoryPath,
		CARootFile:   WriteFile(t, dir, "acme-ca-root.pem", certPEM(srv.Certificate().Raw)),
		srv:          srv,
		store:        store,
	}

	// The issuing root is fetched the way an operator would: from Pebble's
	// management interface.
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	defer mgmt.Close()
	resp, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pebble root: %v %s", err, resp.Status)
	}
	p.Roots = x509.NewCertPool()
	if !p.Roots.AppendCertsFromPEM(body) {
		t.Fatalf("pebble root is not PEM: %q", body)
	}
	p.RootFile = WriteFile(t, dir, "pebble-root.pem", body)
	return p
}

// Stop shuts the CA down, open connections included, so that later orders
// and renewals fail.
func (p *Pebble) Stop() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// ValidatedBy reports, from Pebble's own records, how the order that issued
// the certificate with this serial was authorized: identifier -> the type of
// its valid challenge (acme.ChallengeHTTP01 "http-01", acme.ChallengeTLSALPN01
// "tls-alpn-01").
func (p *Pebble) ValidatedBy(serial *big.Int) (map[string]string, error) {
	cert := p.store.GetCertificateBySerial(serial)
	if cert == nil {
		return nil, fmt.Errorf("pebble issued no certificate with serial %x", serial)
	}
	for _, o := range p.store.GetOrdersByAccountID(cert.AccountID) {
		o.RLock()
		issued, authzs := o.CertificateObject, o.AuthorizationObjects
		o.RUnlock()
		if issued == nil || issued.Cert.SerialNumber.Cmp(serial) != 0 {
			continue
		}
		out := map[string]string{}
		for _, a := range authzs {
			a.RLock()
			id, chals := a.Identifier.Value, a.Challenges
			a.RUnlock()
			for _, c := range chals {
				if typ, ok := validType(c); ok {
					out[id] = typ
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no order of account %s issued serial %x", cert.AccountID, serial)
}

func validType(c *core.Challenge) (string, bool) {
	c.RLock()
	defer c.RUnlock()
	return c.Type, c.Status == acme.StatusValid
}

// LocalhostIP is the address Pebble connects to for "localhost": the first
// one the system resolver gives, as its VA uses that one. A server that
// must answer Pebble's challenges listens there.
func LocalhostIP(t testing.TB) string {
	t.Helper()
	addrs, err := net.DefaultResolver.LookupHost(t.Context(), "localhost")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolving localhost: %v %v", addrs, err)
	}
	return addrs[0]
}

// ListenLocalhost listens on a free port of LocalhostIP until the test ends.
func ListenLocalhost(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(LocalhostIP(t), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// RefusedPort returns a port of LocalhostIP where nothing listens now:
// pointing one of Pebble's challenge types there makes it fail.
func RefusedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(LocalhostIP(t), "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
