// Package daemon owns the running appliance: it builds every part from a
// validated config, starts them in order, reloads them (the same build and
// validate path as start), reports their status, speaks sd_notify to
// systemd, and shuts them down within a bounded time. It is the only package
// that knows all the others.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/broker"
	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/control"
	"github.com/firehose/firehose/appliance/events"
	"github.com/firehose/firehose/appliance/firewall"
	"github.com/firehose/firehose/appliance/gerrit"
	"github.com/firehose/firehose/appliance/journal"
	"github.com/firehose/firehose/appliance/listen"
	"github.com/firehose/firehose/appliance/metrics"
	"github.com/firehose/firehose/appliance/tlsconf"
	"github.com/firehose/firehose/appliance/version"
	"github.com/firehose/firehose/appliance/web"
)

// ShutdownTimeout bounds how long SIGTERM may take.
const ShutdownTimeout = 10 * time.Second

// ReloadReadTimeout bounds how long a reload may spend reading and checking
// the config and the files it names. Only regular files are read, so this
// is for a file system that hangs; the reload then fails and the running
// config stays.
const ReloadReadTimeout = 30 * time.Second

// Prepare loads path and runs every check that start and reload share, so a
// config that passes `firehosectl check` is one the daemon accepts.
func Prepare(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(tlsconf.Check(c), gerrit.Check(c)); err != nil {
		return nil, err
	}
	return c, nil
}

// Daemon is one running appliance.
type Daemon struct {
	log     *slog.Logger
	path    string
	started time.Time

	reloadMu   sync.Mutex    // one reload at a time
	reloadReq  chan struct{} // SIGHUPs waiting for the reloader, at most one
	preparing  atomic.Bool   // a Prepare is running, maybe stuck past its timeout
	prepare    func(string) (*config.Config, error)
	readLimit  time.Duration
	applyMu    sync.Mutex // held while a reload changes parts; shutdown takes it
	stopping   bool       // under applyMu: parts are closing, reloads must not touch them
	done       chan struct{}
	cfg        atomic.Pointer[config.Config]
	lastReload atomic.Pointer[apitype.Reload]

	broker  *broker.Broker
	tls     *tlsconf.Manager // also a part; start needs it before the listeners
	parts   []Part           // in the order they were started
	control *control.Server
	metrics *metrics.Metrics
	journal *journal.Journal // nil when [journal] enabled = false
	web     *web.Handler
	addrs   map[string]net.Addr // of the sockets served, by name
}

// Part is one piece of the appliance that the daemon drives the same way
// from start to shutdown: given every reloaded config, asked for its status
// and its problems, closed at the end. A new piece (journal, cluster,
// metrics) implements Part, is built from the start config in start and
// appended to Daemon.parts; reload, status and shutdown then need no branch
// of their own for it.
type Part interface {
	// Update applies a reloaded config, already validated by Prepare. An
	// error refuses the reload: the parts updated before this one get the
	// running config back, so a part that returns an error must have changed
	// nothing. Trouble that is not the config's fault (the kernel refused)
	// is no error here; Problems reports it.
	Update(*config.Config) error
	// Report fills the part's own fields of the status.
	Report(*apitype.Status)
	// Problems says why the part makes the appliance degraded; nil when it
	// does not.
	Problems() []string
	// Close stops the part; parts are closed in the reverse order of start.
	Close()
}

// tlsPart, firewallPart and gerritPart fit the existing managers to Part.
type tlsPart struct{ *tlsconf.Manager }

func (p tlsPart) Report(st *apitype.Status) { st.TLS = p.Status() }

type firewallPart struct {
	*firewall.Manager
	log *slog.Logger
}

// Update never refuses a reload: the config is good when the kernel
// refuses, and Problems shows why.
func (p firewallPart) Update(c *config.Config) error {
	if err := p.Manager.Update(c); err != nil {
		p.log.Warn("firewall", "error", err)
	}
	return nil
}

func (p firewallPart) Report(st *apitype.Status) { st.Firewall = p.Status() }

type gerritPart struct{ *gerrit.Sources }

func (p gerritPart) Update(c *config.Config) error {
	p.Sources.Update(c.Gerrit)
	return nil
}

func (p gerritPart) Report(st *apitype.Status) { st.Gerrit = p.Status() }

// journalPart, metricsPart and pagePart fit the journal, the metrics
// endpoint and the page to Part.
type journalPart struct{ *journal.Journal }

func (p journalPart) Update(c *config.Config) error { return p.Journal.Update(journal.ConfigFrom(c)) }
func (p journalPart) Report(st *apitype.Status) {
	st.Journal = p.Status()
	st.Cluster = p.ClusterStatus()
}

// metricsPart has nothing to update: a change of [metrics] is refused by
// fixed.
type metricsPart struct{ *metrics.Metrics }

func (metricsPart) Update(*config.Config) error { return nil }
func (p metricsPart) Report(st *apitype.Status) { st.Metrics = p.Status() }

type pagePart struct {
	*web.Handler
	addrs map[string]net.Addr
}

func (p pagePart) Update(c *config.Config) error {
	p.Handler.Update(pageOptions(c, p.addrs))
	return nil
}
func (pagePart) Report(*apitype.Status) {}
func (pagePart) Problems() []string     { return nil }
func (pagePart) Close()                 {}

// Run starts the appliance from the config at path and serves until ctx is
// done or SIGTERM/SIGINT arrives. SIGHUP reloads. An error before READY is
// returned; after it, errors are logged and shown in status.
func Run(ctx context.Context, path string, log *slog.Logger) error {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGPIPE)
	defer signal.Stop(signals)

	d, err := start(path, log)
	if err != nil {
		// The reason goes to the journal (stderr), not to STATUS=, which
		// every user can read and which would quote the config.
		notify("STATUS=failed to start: see journalctl -u firehose")
		return err
	}
	notify(sd.SdNotifyReady + "\nSTATUS=" + d.summary())
	log.Info("firehose ready", "version", version.String(), "config", path)

	var watchdog <-chan time.Time
	if interval, err := sd.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		watchdog = t.C
	}
	statusTick := time.NewTicker(10 * time.Second)
	defer statusTick.Stop()
	go d.reloader()

	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				// Never here: a reload must not hold up SIGTERM or the
				// watchdog. A storm of SIGHUPs makes one more reload.
				select {
				case d.reloadReq <- struct{}{}:
				default:
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			return d.shutdown()
		case <-ctx.Done():
			return d.shutdown()
		case <-watchdog:
			// Pinged from this loop, so a wedged loop stops the pings and
			// systemd restarts the daemon.
			notify(sd.SdNotifyWatchdog)
		case <-statusTick.C:
			notify("STATUS=" + d.summary())
		}
	}
}

func start(path string, log *slog.Logger) (*Daemon, error) {
	cfg, err := Prepare(path)
	if err != nil {
		return nil, err
	}
	if err := usableStateDir(cfg); err != nil {
		return nil, err
	}
	d := newDaemon(path, log)
	d.cfg.Store(cfg)
	if err := d.open(cfg); err != nil {
		d.stopParts()
		return nil, err
	}
	return d, nil
}

func newDaemon(path string, log *slog.Logger) *Daemon {
	return &Daemon{log: log, path: path, started: time.Now(), prepare: Prepare, readLimit: ReloadReadTimeout,
		reloadReq: make(chan struct{}, 1), done: make(chan struct{})}
}

// open builds and starts every part from cfg, in the order that never
// serves a client unprotected. On error the caller stops what was started.
func (d *Daemon) open(cfg *config.Config) (err error) {
	log := d.log
	var sockets []*listen.Socket
	defer func() {
		if err != nil {
			for _, s := range sockets {
				s.Close()
			}
		}
	}()

	if d.tls, err = tlsconf.New(cfg, log.With("component", "tls")); err != nil {
		return err
	}
	d.parts = append(d.parts, tlsPart{d.tls})
	inherited, err := listen.Inherited()
	if err != nil {
		return err
	}
	specs := listenerSpecs(cfg, d.tls.Enabled())
	d.parts = append(d.parts, unservedSockets(specs, inherited))
	if sockets, err = listen.Open(specs, inherited, log); err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			err = fmt.Errorf("%w (another program listens there; see: ss -ltnp)", err)
		case errors.Is(err, syscall.EACCES):
			for _, sp := range specs {
				if strings.HasPrefix(err.Error(), "listener "+sp.Name+":") {
					// systemd refuses to start a socket unit while its service runs.
					err = fmt.Errorf("%w (a port below 1024 needs its socket from systemd: systemctl stop firehose; systemctl enable --now firehose-%s.socket; systemctl start firehose)", err, sp.Name)
				}
			}
		}
		return err
	}
	byName := map[string]net.Addr{}
	for _, s := range sockets {
		byName[s.Name] = s.Addr()
	}
	// ACME answers its challenges on these very sockets (80 and 443).
	d.tls.SetListenerAddrs(byName["ws"], byName["wss"])
	d.addrs = byName
	d.web = web.New(pageOptions(cfg, byName))
	d.parts = append(d.parts, pagePart{d.web, byName})

	broker.TuneGC()
	d.broker = broker.New(log, broker.SettingsFrom(cfg))
	var api *events.API
	if api, err = d.openJournal(cfg); err != nil {
		return err
	}
	for _, s := range sockets {
		l := listen.Resilient(s.Listener, log)
		switch s.Name {
		case "mqtt":
			err = d.broker.ServeMQTT(s.Name, l, s.Source, false)
		case "mqtts":
			err = d.broker.ServeMQTT(s.Name, tls.NewListener(l, d.tls.TLSConfig()), s.Source, true)
		case "ws":
			err = d.broker.ServeWebsocket(s.Name, l, s.Source, false, func(h http.Handler) http.Handler { return d.tls.HTTPHandler(api.Wrap(d.httpHandler(h))) })
		case "wss":
			err = d.broker.ServeWebsocket(s.Name, tls.NewListener(l, d.tls.TLSConfig()), s.Source, true, func(h http.Handler) http.Handler { return api.Wrap(d.httpHandler(h)) })
		}
		if err != nil {
			return err
		}
	}
	// Before READY, so a host is never serving without its rules; a host
	// where it cannot apply (no CAP_NET_ADMIN) still serves, degraded.
	fw := firewallPart{firewall.NewManager(log.With("component", "firewall")), log}
	d.parts = append(d.parts, fw)
	_ = fw.Update(cfg)
	if err = d.broker.Start(); err != nil {
		return fmt.Errorf("starting broker: %w", err)
	}
	var pub gerrit.Publisher = d.broker
	if d.journal != nil {
		pub = d.journal // journaled first, then fanned out like every publish
	}
	g := gerritPart{gerrit.NewSources(cfg.Broker.StateDir, pub, log.With("component", "gerrit"))}
	d.parts = append(d.parts, g)
	_ = g.Update(cfg)
	if err = d.tls.Start(context.Background()); err != nil {
		return err
	}
	d.metrics = metrics.New(metrics.Sources{Status: d.Status, Sys: d.broker.Sys}, log.With("component", "metrics"))
	d.parts = append(d.parts, metricsPart{d.metrics})
	d.metrics.Start(cfg.Metrics)
	d.control, err = control.Listen(cfg.Control.Socket, d, log)
	return err
}

// usableStateDir makes sure state_dir is a directory the daemon can read and
// write, so a wrong owner or a file in its place stops the start with one
// line instead of failing later, deep inside a Gerrit source or ACME.
func usableStateDir(c *config.Config) error {
	dir := c.Broker.StateDir
	fail := func(err error) error {
		return c.ErrorAt(config.Key{"broker", "state_dir"}, "%s is not usable: %v", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fail(err)
	}
	if _, err := os.ReadDir(dir); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".firehose-probe-*")
	if err != nil {
		return fail(err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// unservedSockets is the problem of sockets systemd hands over that the
// config does not serve (mqtts and wss with TLS off, after their units were
// enabled): listen.Open closes the daemon's copies, but the socket units
// keep the ports open, and connections there hang unanswered.
func unservedSockets(specs []listen.Spec, inherited map[string][]net.Listener) Part {
	wanted := map[string]bool{}
	for _, sp := range specs {
		wanted[sp.Name] = true
	}
	names := make([]string, 0, len(inherited))
	for name := range inherited {
		if !wanted[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var p staticProblems
	for _, name := range names {
		for _, l := range inherited[name] {
			p = append(p, fmt.Sprintf("systemd holds %s open for the %s listener, which the config does not serve (mqtts and wss need [tls] mode); stop it: systemctl disable --now firehose-%s.socket; systemctl restart firehose", l.Addr(), name, name))
		}
	}
	return p
}

// staticProblems is a Part with problems fixed at start: only a restart
// changes what systemd hands over.
type staticProblems []string

func (staticProblems) Update(*config.Config) error { return nil }
func (staticProblems) Report(*apitype.Status)      {}
func (p staticProblems) Problems() []string        { return p }
func (staticProblems) Close()                      {}

// listenerSpecs names the sockets the config asks for. The TLS listeners
// exist only with TLS on; a socket systemd hands over for them otherwise is
// closed by listen.Open, with a log line.
func listenerSpecs(c *config.Config, tlsOn bool) []listen.Spec {
	specs := []listen.Spec{
		{Name: "mqtt", Addr: c.Broker.MQTT},
		{Name: "ws", Addr: c.Broker.Websocket},
	}
	if tlsOn {
		specs = append(specs, listen.Spec{Name: "mqtts", Addr: c.Broker.MQTTS}, listen.Spec{Name: "wss", Addr: c.Broker.WebsocketTLS})
	}
	return specs
}

// Reload re-reads the config file and applies it without dropping clients.
// A config that does not pass Prepare, or changes something that cannot
// change live, is refused whole and the running config stays.
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	notify(sd.SdNotifyReloading + "\n" + sd.SdNotifyMonotonicUsec())
	began := time.Now()
	err := d.reload()
	if d.metrics != nil {
		d.metrics.ObserveReload(err == nil, time.Since(began))
	}
	select {
	case <-d.done:
		return err // stopping: no READY=1 after STOPPING=1
	default:
	}
	r := &apitype.Reload{Time: time.Now(), OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	d.lastReload.Store(r)
	notify(sd.SdNotifyReady + "\nSTATUS=" + d.summary())
	if err == nil {
		d.log.Info("reloaded", "config", d.path)
	}
	return err
}

// reloader runs the reloads SIGHUP asks for, one at a time, until shutdown.
func (d *Daemon) reloader() {
	for {
		select {
		case <-d.reloadReq:
			if err := d.Reload(); err != nil {
				d.log.Error("reload rejected; the running config stays", "error", err)
			}
		case <-d.done:
			return
		}
	}
}

func (d *Daemon) reload() error {
	next, err := d.prepareBounded()
	if err != nil {
		return err
	}
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	if d.stopping {
		return errors.New("firehose is shutting down")
	}
	old := d.cfg.Load()
	if err := fixed(old, next); err != nil {
		return err
	}
	for i, p := range d.parts {
		if err := p.Update(next); err != nil {
			// p changed nothing; put back what the parts before it took.
			for _, q := range d.parts[:i] {
				if err := q.Update(old); err != nil {
					d.log.Error("restoring the running config after a refused reload", "error", err)
				}
			}
			return err
		}
	}
	d.broker.Apply(broker.SettingsFrom(next))
	d.cfg.Store(next)
	return nil
}

// prepareBounded runs Prepare for a reload, giving up after d.readLimit or
// at shutdown. A read that hangs cannot be interrupted; it is left behind,
// and later reloads fail at once until it returns, so hung reads never pile
// up.
func (d *Daemon) prepareBounded() (*config.Config, error) {
	if !d.preparing.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("an earlier reload is still reading %s or a file it names, past its %s limit; the running config stays", d.path, d.readLimit)
	}
	type result struct {
		c   *config.Config
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := d.prepare(d.path)
		// Before the result is seen: a reload right after this one must not
		// find the read still running.
		d.preparing.Store(false)
		ch <- result{c, err}
	}()
	t := time.NewTimer(d.readLimit)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-t.C:
		return nil, fmt.Errorf("reading %s and the files it names took longer than %s (a hung file system?); the running config stays", d.path, d.readLimit)
	case <-d.done:
		return nil, errors.New("firehose is shutting down")
	}
}

// fixed refuses changes that only a restart can make, by name.
func fixed(old, next *config.Config) error {
	var errs []error
	for _, f := range []struct {
		key      string
		old, new string
	}{
		{"broker.mqtt", old.Broker.MQTT, next.Broker.MQTT},
		{"broker.websocket", old.Broker.Websocket, next.Broker.Websocket},
		{"broker.mqtts", old.Broker.MQTTS, next.Broker.MQTTS},
		{"broker.websocket_tls", old.Broker.WebsocketTLS, next.Broker.WebsocketTLS},
		{"broker.state_dir", old.Broker.StateDir, next.Broker.StateDir},
		{"control.socket", old.Control.Socket, next.Control.Socket},
		{"metrics.enabled", strconv.FormatBool(old.Metrics.Enabled), strconv.FormatBool(next.Metrics.Enabled)},
		{"metrics.listen", old.Metrics.Listen, next.Metrics.Listen},
		{"journal.enabled", strconv.FormatBool(old.Journal.Enabled), strconv.FormatBool(next.Journal.Enabled)},
		{"journal.fsync", old.Journal.Fsync.String(), next.Journal.Fsync.String()},
	} {
		if f.old != f.new {
			errs = append(errs, fmt.Errorf("reload not supported for %s: old=%q, new=%q (restart firehose to change it)", f.key, f.old, f.new))
		}
	}
	errs = append(errs, fixedCluster(old.Cluster, next.Cluster)...)
	return errors.Join(errs...)
}

func (d *Daemon) shutdown() error {
	notify(sd.SdNotifyStopping)
	// A reload still reading files gives up; one applying finishes first.
	close(d.done)
	d.applyMu.Lock()
	d.stopping = true
	d.applyMu.Unlock()
	d.stopParts()
	d.log.Info("stopped")
	return nil
}

// stopParts stops whatever has been started, in the order that loses
// nothing: no new requests or connections, the parts in reverse (Gerrit
// positions saved while the journal and broker still take its events, then
// the journal), then clients closed. The firewall table stays: a restart
// must not open the host.
func (d *Daemon) stopParts() {
	if d.control != nil {
		d.control.Close()
	}
	if d.broker != nil {
		d.broker.Drain()
	}
	for i := len(d.parts) - 1; i >= 0; i-- {
		d.parts[i].Close()
	}
	if d.broker != nil {
		if err := d.broker.Close(ShutdownTimeout); err != nil {
			d.log.Error("shutdown", "error", err)
		}
	}
}

// Status reports the whole appliance; the control API serves it.
func (d *Daemon) Status() *apitype.Status {
	cfg := d.cfg.Load()
	bs := d.broker.Status()
	st := &apitype.Status{
		Version:       version.String(),
		Config:        d.path,
		Started:       d.started.UTC(),
		UptimeSeconds: time.Since(d.started).Seconds(),
		Listeners:     bs.Listeners,
		Clients:       bs.Clients,
		Subscriptions: bs.Subscriptions,
		Messages:      bs.Messages,
		Refusals:      bs.Refusals,
		Publishers:    make([]string, 0, len(cfg.Publishers)),
		LastReload:    d.lastReload.Load(),
		Connections:   bs.Connections,
	}
	for _, p := range cfg.Publishers {
		st.Publishers = append(st.Publishers, p.Username)
	}
	for _, p := range d.parts {
		p.Report(st)
		st.Reasons = append(st.Reasons, p.Problems()...)
	}
	if r := st.LastReload; r != nil && !r.OK {
		st.Reasons = append(st.Reasons, "last reload failed, still running the previous config (a restart would fail too): "+oneLine(errors.New(r.Error)))
	}
	st.State = apitype.StateOK
	if len(st.Reasons) > 0 {
		st.State = apitype.StateDegraded
	}
	return st
}

// summary is the one-line STATUS= systemd shows. Any user may read it
// (systemctl status), so it says how many problems there are, never what
// they are: they quote the config.
func (d *Daemon) summary() string {
	st := d.Status()
	s := fmt.Sprintf("%s: %d clients, %d subscriptions, %.0f msg/s in, %.0f msg/s out",
		st.State, st.Clients, st.Subscriptions, st.Messages.ReceivedPerSec, st.Messages.SentPerSec)
	if n := len(st.Reasons); n > 0 {
		s += fmt.Sprintf("; %d problem(s): see sudo firehosectl status", n)
	}
	return s
}

func notify(state string) { _, _ = sd.SdNotify(false, state) }

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
