// Package tlsconf owns the certificates of the mqtts and websocket_tls
// listeners: loading a certificate and key from files, or obtaining and
// renewing them over ACME (certmagic), and answering the CA's HTTP-01 and
// TLS-ALPN-01 challenges through the daemon's own listeners. It hands the
// daemon one *tls.Config whose certificate changes under it on reload and
// renewal, and reports what it serves and what went wrong.
//
// It never opens a listener of its own (the daemon owns every port; certmagic
// is configured so that it answers on the daemon's sockets), never prompts,
// and never replaces a working certificate with one it could not load.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// ExpiryWarning is how close to its expiry a certificate makes the appliance
// degraded. ACME renews at a third of the lifetime left (30 days for a
// 90-day certificate), so reaching this means renewal has been failing.
const ExpiryWarning = 14 * 24 * time.Hour

// ALPN protocol names.
const (
	alpnACME = "acme-tls/1" // TLS-ALPN-01 challenges (RFC 8737)
	alpnHTTP = "http/1.1"   // websockets over TLS
)

// source is where certificates come from in one mode.
type source interface {
	start() error
	getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	status(*apitype.TLSStatus)
	problems(now time.Time) []string
	close()
}

// Check validates the TLS section beyond what config checks: in files mode
// it loads the pair and checks that the key matches the certificate; in
// acme mode it parses acme_ca_root. Errors name file, line and key.
func Check(c *config.Config) error {
	switch c.TLS.Mode {
	case config.TLSOff, "":
		return nil
	case config.TLSFiles:
		_, err := loadFiles(c)
		return err
	case config.TLSACME:
		if len(c.TLS.Domains) == 0 {
			return c.ErrorAt(config.Key{"tls", "domains"}, "is required with mode = \"acme\"")
		}
		if c.Broker.Websocket == "" && c.Broker.WebsocketTLS == "" {
			return c.ErrorAt(config.Key{"tls", "mode"}, "\"acme\" needs broker.websocket (HTTP-01 on port 80) or broker.websocket_tls (TLS-ALPN-01 on port 443) to answer the CA's challenges")
		}
		_, _, err := loadRoots(c)
		return err
	default:
		return c.ErrorAt(config.Key{"tls", "mode"}, "%q is not one of \"off\", \"files\", \"acme\"", c.TLS.Mode)
	}
}

// Manager serves the current certificate to the daemon's TLS listeners.
// Its methods are safe for concurrent use.
type Manager struct {
	log     *slog.Logger
	enabled bool
	src     atomic.Pointer[source]
	tlsConf *tls.Config
	// Per-connection variants chosen by GetConfigForClient.
	alpnConf, httpConf, plainConf *tls.Config

	mu      sync.Mutex // serialises Start, Update, Close and SetListenerAddrs
	cfg     *config.Config
	ports   *challengePorts // nil until SetListenerAddrs: taken from the config
	started bool
	closed  bool
}

// New builds a Manager for c. Mode off gives a Manager whose Enabled is
// false. In files mode the pair is loaded now; in acme mode nothing touches
// the network until Start.
func New(c *config.Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: log, cfg: c, enabled: c.TLS.Mode != config.TLSOff && c.TLS.Mode != ""}
	if !m.enabled {
		return m, nil
	}
	src, err := m.build(c)
	if err != nil {
		return nil, err
	}
	m.src.Store(&src)

	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.getCertificate,
	}
	m.alpnConf = base.Clone()
	m.alpnConf.NextProtos = []string{alpnACME}
	m.httpConf = base.Clone()
	m.httpConf.NextProtos = []string{alpnHTTP}
	m.plainConf = base.Clone()
	m.tlsConf = base.Clone()
	m.tlsConf.NextProtos = []string{alpnHTTP, alpnACME}
	m.tlsConf.GetConfigForClient = m.configForClient
	return m, nil
}

// build makes the source for c without starting it. Callers hold m.mu or
// own m exclusively.
func (m *Manager) build(c *config.Config) (source, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	switch c.TLS.Mode {
	case config.TLSFiles:
		return loadFiles(c)
	case config.TLSACME:
		return newACME(c, m.challengePorts(c), m.log)
	}
	return nil, fmt.Errorf("tls: mode %q has no certificates", c.TLS.Mode)
}

// SetListenerAddrs tells the Manager where the daemon's plain websocket
// (port 80) and websocket_tls (port 443) listeners really are, for sockets
// from systemd or bound to port 0; nil means that listener is absent, which
// turns off the challenge type it would answer. Without a call the ports
// come from broker.websocket and broker.websocket_tls. Call it before Start;
// a later Update keeps it.
func (m *Manager) SetListenerAddrs(websocket, websocketTLS net.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := challengePorts{http: addrPort(websocket), tlsALPN: addrPort(websocketTLS)}
	p.host = listenHost(addrHost(websocket), addrHost(websocketTLS))
	m.ports = &p
	if !m.enabled || m.started {
		return
	}
	// Rebuild so that the issuer uses these ports; nothing has run yet.
	if s, ok := (*m.src.Load()).(*acmeSource); ok {
		if ns, err := newACME(m.cfg, *m.ports, m.log); err == nil {
			var src source = ns
			m.src.Store(&src)
			s.close()
		}
	}
}

func (m *Manager) challengePorts(c *config.Config) challengePorts {
	if m.ports != nil {
		return *m.ports
	}
	return challengePorts{
		host:    listenHost(configHost(c.Broker.Websocket), configHost(c.Broker.WebsocketTLS)),
		http:    configPort(c.Broker.Websocket),
		tlsALPN: configPort(c.Broker.WebsocketTLS),
	}
}

// listenHost picks certmagic's ListenHost from the hosts of the two
// listeners ("-" for an absent one): their common host, or "" (the
// wildcard, whose bind conflicts with any socket on the port).
func listenHost(ws, wss string) string {
	switch {
	case ws == "-":
		ws = wss
	case wss == "-":
		wss = ws
	}
	if ws != wss || ws == "-" {
		return ""
	}
	if ip := net.ParseIP(ws); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return ws
}

// absent reports a missing listener, typed nil pointers included.
func absent(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return a == nil || (ok && t == nil)
}

func addrHost(a net.Addr) string {
	if absent(a) {
		return "-"
	}
	if t, ok := a.(*net.TCPAddr); ok {
		if len(t.IP) == 0 {
			return ""
		}
		return t.IP.String()
	}
	return configHost(a.String())
}

func configHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "-"
	}
	return h
}

func addrPort(a net.Addr) int {
	if absent(a) {
		return 0
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return configPort(a.String())
}

func configPort(addr string) int {
	if addr == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Enabled reports whether TLS is on (mode files or acme).
func (m *Manager) Enabled() bool { return m.enabled }

// Start begins obtaining and renewing certificates in acme mode and returns
// at once: certificates in storage are loaded and the CA is contacted in the
// background. ctx is not kept; renewals run until Close.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.enabled || m.started {
		return nil
	}
	if m.closed {
		return errors.New("tls: Start after Close")
	}
	m.started = true
	return (*m.src.Load()).start()
}

// Update applies a reloaded config. It validates and builds everything
// first; on error nothing changes and the current certificate keeps
// serving. Turning TLS on or off is refused, since the daemon cannot add or
// remove listeners live. Connections already open keep their certificate.
func (m *Manager) Update(c *config.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("tls: Update after Close")
	}
	oldMode, newMode := modeOf(m.cfg), modeOf(c)
	if (oldMode == config.TLSOff) != (newMode == config.TLSOff) {
		return fmt.Errorf("reload not supported for tls.mode: old=%q, new=%q (restart firehose)", oldMode, newMode)
	}
	if newMode == config.TLSOff {
		m.cfg = c
		return nil
	}
	old := *m.src.Load()
	if a, isACME := old.(*acmeSource); isACME && newMode == config.TLSACME && sameACME(m.cfg, c) && a.sameRoots(c) {
		// Restarting certmagic would only repeat its storage load and
		// maintenance; keep it.
		m.cfg = c
		return nil
	}
	src, err := m.build(c)
	if err != nil {
		return err
	}
	if m.started {
		if err := src.start(); err != nil {
			src.close()
			return fmt.Errorf("tls: %w", err)
		}
	}
	m.src.Store(&src)
	m.cfg = c
	old.close()
	return nil
}

func modeOf(c *config.Config) string {
	if c.TLS.Mode == "" {
		return config.TLSOff
	}
	return c.TLS.Mode
}

func sameACME(a, b *config.Config) bool {
	ta, tb := a.TLS, b.TLS
	return slices.Equal(ta.Domains, tb.Domains) && ta.Email == tb.Email && ta.ACMECA == tb.ACMECA &&
		ta.ACMECARoot == tb.ACMECARoot && a.Broker.StateDir == b.Broker.StateDir &&
		a.Broker.Websocket == b.Broker.Websocket && a.Broker.WebsocketTLS == b.Broker.WebsocketTLS
}

// TLSConfig returns the config for the mqtts and websocket_tls listeners:
// always the same value, nil when TLS is off. Treat it as read-only: the
// certificate is chosen per handshake, so reloads and renewals reach new
// connections, and GetConfigForClient picks the ALPN answer per client
// (acme-tls/1 for the CA, http/1.1 for websockets, none for MQTT clients,
// so that a client offering an ALPN name we do not know is still served
// rather than refused).
func (m *Manager) TLSConfig() *tls.Config { return m.tlsConf }

func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return (*m.src.Load()).getCertificate(hello)
}

func (m *Manager) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	switch {
	case len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnACME:
		return m.alpnConf, nil
	case slices.Contains(hello.SupportedProtos, alpnHTTP):
		return m.httpConf, nil
	default:
		return m.plainConf, nil
	}
}

// HTTPHandler answers ACME HTTP-01 challenges and passes every other request
// to next. It is next itself when TLS is off; in files mode it passes
// everything through (a reload may switch to acme).
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if !m.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			if s, ok := (*m.src.Load()).(*acmeSource); ok && s.handleHTTP(w, r) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Status reports the mode, the certificates served and the last ACME error.
func (m *Manager) Status() *apitype.TLSStatus {
	m.mu.Lock()
	mode := modeOf(m.cfg)
	m.mu.Unlock()
	st := &apitype.TLSStatus{Mode: mode}
	if m.enabled {
		(*m.src.Load()).status(st)
	}
	return st
}

// Problems lists what makes the appliance degraded: certificates expiring
// within ExpiryWarning, ACME failures newer than the last success, domains
// without a certificate. Nil when all is well.
func (m *Manager) Problems() []string {
	if !m.enabled {
		return nil
	}
	return (*m.src.Load()).problems(time.Now())
}

// Close stops renewals. TLSConfig keeps serving what is cached.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.enabled {
		m.closed = true
		return
	}
	m.closed = true
	(*m.src.Load()).close()
}

func certStatus(leaf *x509.Certificate) apitype.TLSCertificate {
	issuer := leaf.Issuer.CommonName
	if issuer == "" {
		issuer = leaf.Issuer.String()
	}
	return apitype.TLSCertificate{Names: certNames(leaf), Issuer: issuer, NotAfter: leaf.NotAfter.UTC()}
}

func certNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}

// expiryProblem describes a certificate that expires within ExpiryWarning
// or has expired; "" otherwise.
func expiryProblem(leaf *x509.Certificate, now time.Time) string {
	left := leaf.NotAfter.Sub(now)
	if left >= ExpiryWarning {
		return ""
	}
	name := strings.Join(certNames(leaf), ", ")
	if left <= 0 {
		return fmt.Sprintf("tls: certificate for %s expired %s ago", name, span(-left))
	}
	return fmt.Sprintf("tls: certificate for %s expires in %s", name, span(left))
}

func span(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
}
