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
	"github.com/firehose/firehose/appliance/tlsconf"
	"github.com/firehose/firehose/appliance/version"
)

// ShutdownTimeout bounds how long SIGTERM may take.
const ShutdownTimeout = 10 * time.Second

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

	reloadMu   sync.Mutex // one reload at a time
	cfg        atomic.Pointer[config.Config]
	lastReload atomic.Pointer[apitype.Reload]

	broker  *broker.Broker
	tls     *tlsconf.Manager
	fw      *firewall.Manager
	gerrit  *gerrit.Sources
	control *control.Server
	journal *journal.Journal // nil when [journal] enabled = false
}

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
		notify("STATUS=failed to start: " + oneLine(err))
		return err
	}
	notify(sd.SdNotifyReady + "\nSTATUS=" + d.summary())
	log.Info("firehose ready", "version", version.Version, "config", path)

	var watchdog <-chan time.Time
	if interval, err := sd.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		watchdog = t.C
	}
	statusTick := time.NewTicker(10 * time.Second)
	defer statusTick.Stop()

	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				if err := d.Reload(); err != nil {
					log.Error("reload rejected; the running config stays", "error", err)
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

func start(path string, log *slog.Logger) (d *Daemon, err error) {
	cfg, err := Prepare(path)
	if err != nil {
		return nil, err
	}
	d = &Daemon{log: log, path: path, started: time.Now()}
	d.cfg.Store(cfg)
	var sockets []*listen.Socket
	defer func() {
		if err != nil {
			for _, s := range sockets {
				s.Close()
			}
			d.stopParts()
		}
	}()

	if d.tls, err = tlsconf.New(cfg, log.With("component", "tls")); err != nil {
		return nil, err
	}
	inherited, err := listen.Inherited()
	if err != nil {
		return nil, err
	}
	if sockets, err = listen.Open(listenerSpecs(cfg, d.tls.Enabled()), inherited, log); err != nil {
		return nil, err
	}
	byName := map[string]net.Addr{}
	for _, s := range sockets {
		byName[s.Name] = s.Addr()
	}
	// ACME answers its challenges on these very sockets (80 and 443).
	d.tls.SetListenerAddrs(byName["ws"], byName["wss"])

	broker.TuneGC()
	d.broker = broker.New(log, broker.SettingsFrom(cfg))
	var api *events.API
	if api, err = d.openJournal(cfg); err != nil {
		return nil, err
	}
	for _, s := range sockets {
		l := listen.Resilient(s.Listener, log)
		switch s.Name {
		case "mqtt":
			err = d.broker.ServeMQTT(s.Name, l, s.Source, false)
		case "mqtts":
			err = d.broker.ServeMQTT(s.Name, tls.NewListener(l, d.tls.TLSConfig()), s.Source, true)
		case "ws":
			err = d.broker.ServeWebsocket(s.Name, l, s.Source, false, func(h http.Handler) http.Handler { return d.tls.HTTPHandler(api.Wrap(h)) })
		case "wss":
			err = d.broker.ServeWebsocket(s.Name, tls.NewListener(l, d.tls.TLSConfig()), s.Source, true, api.Wrap)
		}
		if err != nil {
			return nil, err
		}
	}
	// Before READY, so a host is never serving without its rules; a host
	// where it cannot apply (no CAP_NET_ADMIN) still serves, degraded.
	d.fw = firewall.NewManager(log.With("component", "firewall"))
	if err := d.fw.Update(cfg); err != nil {
		log.Warn("firewall", "error", err)
	}
	if err = d.broker.Start(); err != nil {
		return nil, fmt.Errorf("starting broker: %w", err)
	}
	var pub gerrit.Publisher = d.broker
	if d.journal != nil {
		pub = d.journal // journaled first, then fanned out like every publish
	}
	d.gerrit = gerrit.NewSources(cfg.Broker.StateDir, pub, log.With("component", "gerrit"))
	d.gerrit.Update(cfg.Gerrit)
	if err = d.tls.Start(context.Background()); err != nil {
		return nil, err
	}
	if d.control, err = control.Listen(cfg.Control.Socket, d, log); err != nil {
		return nil, err
	}
	return d, nil
}

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
	err := d.reload()
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

func (d *Daemon) reload() error {
	next, err := Prepare(d.path)
	if err != nil {
		return err
	}
	old := d.cfg.Load()
	if err := fixed(old, next); err != nil {
		return err
	}
	if d.journal != nil {
		if err := d.journal.Update(journal.ConfigFrom(next)); err != nil {
			return err
		}
	}
	// The last step that can still fail; it changes nothing when it does.
	if err := d.tls.Update(next); err != nil {
		if d.journal != nil {
			_ = d.journal.Update(journal.ConfigFrom(old))
		}
		return err
	}
	d.broker.Apply(broker.SettingsFrom(next))
	d.gerrit.Update(next.Gerrit)
	if err := d.fw.Update(next); err != nil {
		// The config is good; the kernel refused. Status shows it.
		d.log.Warn("firewall", "error", err)
	}
	d.cfg.Store(next)
	return nil
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
		{"journal.enabled", fmt.Sprint(old.Journal.Enabled), fmt.Sprint(next.Journal.Enabled)},
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
	d.stopParts()
	d.log.Info("stopped")
	return nil
}

// stopParts stops whatever has been started, in the order that loses
// nothing: no new requests, Gerrit positions saved while the broker still
// takes events, then clients closed. The firewall table stays: a restart
// must not open the host.
func (d *Daemon) stopParts() {
	if d.control != nil {
		d.control.Close()
	}
	if d.gerrit != nil {
		d.gerrit.Close()
	}
	if d.tls != nil {
		d.tls.Close()
	}
	if d.fw != nil {
		d.fw.Close()
	}
	if d.broker != nil {
		d.broker.Drain()
	}
	if d.journal != nil {
		d.journal.Close() // after the publishers, before the subscribers
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
		Version:       version.Version,
		Config:        d.path,
		Started:       d.started.UTC(),
		UptimeSeconds: time.Since(d.started).Seconds(),
		Listeners:     bs.Listeners,
		Clients:       bs.Clients,
		Subscriptions: bs.Subscriptions,
		Messages:      bs.Messages,
		Publishers:    make([]string, 0, len(cfg.Publishers)),
		LastReload:    d.lastReload.Load(),
	}
	for _, p := range cfg.Publishers {
		st.Publishers = append(st.Publishers, p.Username)
	}
	st.TLS = d.tls.Status()
	st.Reasons = append(st.Reasons, d.tls.Problems()...)
	st.Gerrit = d.gerrit.Status()
	st.Reasons = append(st.Reasons, d.gerrit.Problems()...)
	st.Firewall = d.fw.Status()
	st.Reasons = append(st.Reasons, d.fw.Problems()...)
	if d.journal != nil {
		st.Journal = d.journal.Status()
		st.Reasons = append(st.Reasons, d.journal.Problems()...)
		st.Cluster = d.journal.ClusterStatus()
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

// summary is the one-line STATUS= systemd shows.
func (d *Daemon) summary() string {
	st := d.Status()
	s := fmt.Sprintf("%s: %d clients, %d subscriptions, %.0f msg/s in, %.0f msg/s out",
		st.State, st.Clients, st.Subscriptions, st.Messages.ReceivedPerSec, st.Messages.SentPerSec)
	if len(st.Reasons) > 0 {
		s += "; " + st.Reasons[0]
	}
	return s
}

func notify(state string) { _, _ = sd.SdNotify(false, state) }

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
