package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// acmeSource obtains and renews certificates with certmagic. Each one has
// its own certmagic cache and storage view; a reload that changes the ACME
// settings builds a new one and closes the old.
type acmeSource struct {
	domains []string
	ca      string
	roots   []byte // acme_ca_root as read, to notice a changed file on reload
	magic   *certmagic.Config
	cache   *certmagic.Cache
	iss     *certmagic.ACMEIssuer
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	lastErr *apitype.ACMEError
	failing map[string]string    // domain -> error newer than its last success
	okAt    map[string]time.Time // domain -> last success
}

// challengePorts says where the daemon answers the CA's challenges. A port
// of 0 means there is no such listener, so that challenge type is off. host
// is the listeners' address when they share a specific one, else "".
type challengePorts struct {
	host          string
	http, tlsALPN int
}

// acmeCA returns the directory URL to use for t.
func acmeCA(t config.TLS) string {
	if t.ACMECA != "" {
		return t.ACMECA
	}
	return certmagic.LetsEncryptProductionCA
}

// loadRoots reads acme_ca_root: the system roots plus the file's, or nil
// (the system roots alone) when unset. It also returns the file's bytes.
func loadRoots(c *config.Config) (*x509.CertPool, []byte, error) {
	if c.TLS.ACMECARoot == "" {
		return nil, nil, nil
	}
	k := config.Key{"tls", "acme_ca_root"}
	b, err := os.ReadFile(c.TLS.ACMECARoot)
	if err != nil {
		return nil, nil, c.ErrorAt(k, "cannot read the CA root certificates: %v", pathErr(err))
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, nil, c.ErrorAt(k, "%s holds no PEM certificate", c.TLS.ACMECARoot)
	}
	return pool, b, nil
}

func newACME(c *config.Config, ports challengePorts, log *slog.Logger) (*acmeSource, error) {
	roots, rootsPEM, err := loadRoots(c)
	if err != nil {
		return nil, err
	}
	t := c.TLS
	zl := newZap(log.With("acme_ca", acmeCA(t)))
	s := &acmeSource{
		domains: append([]string(nil), t.Domains...),
		ca:      acmeCA(t),
		roots:   rootsPEM,
		failing: map[string]string{},
		okAt:    map[string]time.Time{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return s.magic, nil },
		Logger:           zl,
	})
	s.magic = certmagic.New(s.cache, certmagic.Config{
		// Explicit, because certmagic's default lives under $HOME, which a
		// DynamicUser service does not have.
		Storage: &certmagic.FileStorage{Path: filepath.Join(c.Broker.StateDir, "acme")},
		Logger:  zl,
		OnEvent: s.onEvent,
		// Without this certmagic builds an event for every handshake.
		ShouldEmitFunc: func(event string) bool { return event == "cert_failed" || event == "cert_obtained" },
		// Clients that connect by IP send no SNI (or a name we do not have):
		// serve them the first domain's certificate, as Mosquitto did.
		DefaultServerName:  t.Domains[0],
		FallbackServerName: t.Domains[0],
	})
	s.iss = certmagic.NewACMEIssuer(s.magic, certmagic.ACMEIssuer{
		CA:     s.ca,
		Email:  t.Email,
		Agreed: true, // never prompt on stdin
		// The daemon's own listeners answer both challenges, but certmagic's
		// solvers still try to bind host:port and start their own server if
		// that works. On exactly our listener's address (or the wildcard, for
		// a wildcard listener) the bind must fail; certmagic then dials the
		// address, finds us answering and leaves the challenge to us. Any
		// other host could bind beside ours and take the challenge traffic.
		ListenHost:              ports.host,
		AltHTTPPort:             ports.http,
		AltTLSALPNPort:          ports.tlsALPN,
		DisableHTTPChallenge:    ports.http == 0,
		DisableTLSALPNChallenge: ports.tlsALPN == 0,
		TrustedRoots:            roots,
		Logger:                  zl,
	})
	s.magic.Issuers = []certmagic.Issuer{s.iss}
	return s, nil
}

// sameRoots reports whether c's acme_ca_root reads as it did for s.
func (s *acmeSource) sameRoots(c *config.Config) bool {
	if c.TLS.ACMECARoot == "" {
		return s.roots == nil
	}
	b, err := os.ReadFile(c.TLS.ACMECARoot)
	return err == nil && bytes.Equal(b, s.roots)
}

// onEvent records outcomes for Status; certmagic calls it synchronously.
func (s *acmeSource) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_failed":
		msg := fmt.Sprint(data["error"])
		s.mu.Lock()
		s.lastErr = &apitype.ACMEError{Time: time.Now(), Domain: name, Renewal: renewal, Error: msg}
		s.failing[name] = msg
		s.mu.Unlock()
	case "cert_obtained":
		s.mu.Lock()
		delete(s.failing, name)
		s.okAt[name] = time.Now()
		s.mu.Unlock()
	}
	return nil
}

// start loads certificates from storage and obtains or renews the others in
// the background; it does not wait for the CA.
func (s *acmeSource) start() error {
	return s.magic.ManageAsync(s.ctx, s.domains)
}

func (s *acmeSource) close() {
	s.cancel()
	s.cache.Stop()
}

func (s *acmeSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.magic.GetCertificate(hello)
}

func (s *acmeSource) handleHTTP(w http.ResponseWriter, r *http.Request) bool {
	return s.iss.HandleHTTPChallenge(w, r)
}

// current returns the newest cached certificate for each domain that has one.
func (s *acmeSource) current() map[string]*x509.Certificate {
	out := map[string]*x509.Certificate{}
	for _, d := range s.domains {
		for _, c := range s.cache.AllMatchingCertificates(d) {
			leaf := c.Leaf
			if leaf == nil && len(c.Certificate.Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(c.Certificate.Certificate[0])
			}
			if leaf != nil && (out[d] == nil || leaf.NotAfter.After(out[d].NotAfter)) {
				out[d] = leaf
			}
		}
	}
	return out
}

func (s *acmeSource) status(st *apitype.TLSStatus) {
	st.ACMECA = s.ca
	cur := s.current()
	seen := map[string]bool{}
	for _, d := range s.domains {
		leaf := cur[d]
		if leaf == nil {
			st.Pending = append(st.Pending, d)
			continue
		}
		if id := string(leaf.Raw); !seen[id] {
			seen[id] = true
			st.Certificates = append(st.Certificates, certStatus(leaf))
		}
	}
	s.mu.Lock()
	if s.lastErr != nil {
		e := *s.lastErr
		st.LastACMEError = &e
	}
	s.mu.Unlock()
}

func (s *acmeSource) problems(now time.Time) []string {
	var out []string
	cur := s.current()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.domains {
		if msg, ok := s.failing[d]; ok {
			out = append(out, fmt.Sprintf("tls: acme: %s: %s", d, oneLine(msg)))
		}
		if leaf := cur[d]; leaf == nil {
			out = append(out, fmt.Sprintf("tls: no certificate yet for %s", d))
		} else if p := expiryProblem(leaf, now); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 400
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
