package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// DefaultHealInterval is how often the watcher checks that the table is still
// in place. Short, because between a `flush ruleset` and the re-apply the host
// is open; each check is three small netlink dumps.
const DefaultHealInterval = 2 * time.Second

// Manager keeps the kernel's table in line with the latest config: Update
// loads it, a watcher puts it back when it is removed or altered, Status and
// Problems report on it. Its methods are safe for concurrent use.
type Manager struct {
	log   *slog.Logger
	netns int // 0: the process's own network namespace
	every time.Duration

	op      sync.Mutex // serialises everything that talks to the kernel
	desired *plan      // nil when no table should exist (disabled, removed, no config yet)
	lost    bool       // the table was in place and then found gone or altered

	mu      sync.Mutex // guards st and problem; never held across kernel calls
	st      apitype.FirewallStatus
	problem string

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Option configures a Manager.
type Option func(*Manager)

// WithNetNS makes the Manager work in the network namespace the open file
// descriptor fd refers to, instead of the process's own. For tests.
func WithNetNS(fd int) Option { return func(m *Manager) { m.netns = fd } }

// WithHealInterval sets how often the watcher checks the table; d <= 0 turns
// the watcher off (the CLI's one-shot apply needs none).
func WithHealInterval(d time.Duration) Option { return func(m *Manager) { m.every = d } }

// NewManager returns a Manager that has not touched the kernel yet; the first
// Update does. log may be nil.
func NewManager(log *slog.Logger, opts ...Option) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		log:   log.With("component", "firewall"),
		every: DefaultHealInterval,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		st:    apitype.FirewallStatus{Table: "inet " + TableName},
	}
	for _, o := range opts {
		o(m)
	}
	if m.every > 0 {
		go m.watch()
	} else {
		close(m.done)
	}
	return m
}

func (m *Manager) conn() (*nftables.Conn, error) {
	if m.netns != 0 {
		return nftables.New(nftables.WithNetNSFd(m.netns))
	}
	return nftables.New()
}

// Update makes the kernel match c: it replaces the table atomically when the
// firewall is enabled and removes it when disabled. On error the previous
// table, if any, stays in the kernel, the error shows in Status and Problems,
// and the watcher keeps retrying; the caller should carry on serving.
func (m *Manager) Update(c *config.Config) error {
	m.op.Lock()
	defer m.op.Unlock()
	p := newPlan(c)
	if !c.Firewall.Enabled {
		m.desired, m.lost = nil, false
		m.setStatus(func(st *apitype.FirewallStatus) {
			st.Enabled, st.InPlace = false, false
			st.TCP, st.UDP, st.LimitedPorts, st.NewConnectionsPerSource = nil, nil, nil, ""
		})
		return m.removeLocked(true)
	}
	m.desired = p
	m.setStatus(func(st *apitype.FirewallStatus) {
		st.Enabled = true
		st.TCP, st.UDP, st.LimitedPorts = p.tcp, p.udp, p.limited
		st.NewConnectionsPerSource = p.rate.String()
	})
	return m.applyLocked()
}

// applyLocked loads m.desired. m.op must be held.
func (m *Manager) applyLocked() error {
	rs := m.desired.build()
	c, err := m.conn()
	if err == nil {
		err = load(c, rs)
	}
	now := time.Now()
	if err != nil {
		err = explain(err)
		m.fail("firewall not applied: ", err)
		return fmt.Errorf("firewall not applied: %w", err)
	}
	m.mu.Lock()
	if m.problem != "" {
		m.log.Info("firewall applied after earlier failure", "previous", m.problem)
	}
	m.problem = ""
	m.st.InPlace, m.st.LastError = true, ""
	m.st.LastApplied, m.st.LastChecked = now, now
	if m.lost {
		m.st.Reapplied++
		m.st.LastReapplied = now
	}
	m.mu.Unlock()
	if m.lost {
		m.log.Warn("firewall table re-applied after it was removed or altered", "table", "inet "+TableName)
	} else {
		m.log.Info("firewall applied", "tcp", m.desired.tcp, "udp", m.desired.udp, "new_connections_per_source", m.desired.rate.String())
	}
	m.lost = false
	return nil
}

// Remove deletes the table, if present, and stops the watcher from putting it
// back until the next Update. Nothing else in the kernel is touched.
func (m *Manager) Remove() error {
	m.op.Lock()
	defer m.op.Unlock()
	m.desired, m.lost = nil, false
	m.setStatus(func(st *apitype.FirewallStatus) { st.InPlace = false })
	return m.removeLocked(false)
}

// removeLocked deletes the table. When quietEPERM is set, lacking
// CAP_NET_ADMIN is not an error: a daemon that may not change the firewall
// cannot have left a table behind, and enabled = false must not make a
// developer's daemon degraded.
func (m *Manager) removeLocked(quietEPERM bool) error {
	c, err := m.conn()
	var present bool
	if err == nil {
		present, err = tablePresent(c)
	}
	if err == nil && present {
		err = unload(c)
	}
	if err != nil {
		err = explain(err)
		if quietEPERM && isPermission(err) {
			m.log.Debug("firewall disabled; cannot check for a stale table", "err", err)
			m.clearProblem()
			return nil
		}
		m.fail("firewall table not removed: ", err)
		return fmt.Errorf("firewall table not removed: %w", err)
	}
	if present {
		m.log.Info("firewall table removed", "table", "inet "+TableName)
	}
	m.clearProblem()
	return nil
}

func isPermission(err error) bool { return errors.Is(err, errNeedCap) }

func (m *Manager) clearProblem() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.problem, m.st.LastError = "", ""
}

// fail records err; it is logged only when it differs from the last one, so
// a watcher retrying without permission does not flood the journal.
func (m *Manager) fail(prefix string, err error) {
	m.mu.Lock()
	problem := prefix + err.Error()
	repeat := problem == m.problem
	m.problem, m.st.LastError = problem, err.Error()
	m.st.InPlace = false
	m.mu.Unlock()
	if !repeat {
		m.log.Error(problem)
	}
}

func (m *Manager) setStatus(f func(*apitype.FirewallStatus)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.st)
}

// watch re-checks the table until Close: on every nftables change in the
// namespace, so that a `flush ruleset` leaves the host open for milliseconds
// rather than seconds, and on a timer, in case the events are lost or cannot
// be had.
func (m *Manager) watch() {
	defer close(m.done)
	kick := make(chan struct{}, 1)
	stopEvents := m.subscribe(kick)
	defer stopEvents()
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-kick:
		}
		m.heal()
	}
}

// subscribe sends on kick (without blocking) after every nftables
// transaction in the namespace. The returned func ends the subscription.
func (m *Manager) subscribe(kick chan<- struct{}) (stop func()) {
	c, err := m.conn()
	if err != nil {
		m.log.Debug("no nftables events; checking on the timer only", "err", err)
		return func() {}
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectRuleset))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		m.log.Debug("no nftables events; checking on the timer only", "err", explain(err))
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The monitor blocks until its channel is read, so read it to
		// the end, which Close brings about.
		for ev := range events {
			if ev.GeneratedBy != nil && ev.GeneratedBy.Error != nil {
				m.log.Debug("nftables events stopped; checking on the timer only", "err", ev.GeneratedBy.Error)
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}()
	return func() {
		mon.Close()
		<-done
	}
}

// heal compares the kernel's table with the desired one and reloads it when
// it is missing or different (e.g. after nftables.service ran `flush
// ruleset`), or when the last apply failed.
func (m *Manager) heal() {
	m.op.Lock()
	defer m.op.Unlock()
	if m.desired == nil {
		return
	}
	c, err := m.conn()
	var why string
	if err == nil {
		why, err = drift(c, m.desired.build())
	}
	m.mu.Lock()
	m.st.LastChecked = time.Now()
	wasInPlace := m.st.InPlace
	m.mu.Unlock()
	if err != nil {
		// Loading says more than a failed look: without permission it
		// fails the same way (and is logged once), and it picks up a
		// capability granted later.
		m.log.Debug("firewall check failed; re-applying", "err", explain(err))
		_ = m.applyLocked()
		return
	}
	if why == "" {
		m.mu.Lock()
		m.st.InPlace = true
		m.problem, m.st.LastError = "", ""
		m.mu.Unlock()
		return
	}
	if wasInPlace {
		m.lost = true
		m.log.Warn("firewall table removed or altered behind firehose's back; re-applying", "why", why)
	}
	_ = m.applyLocked()
}

// Status returns a copy of the current state.
func (m *Manager) Status() *apitype.FirewallStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.TCP, st.UDP, st.LimitedPorts = slices.Clone(st.TCP), slices.Clone(st.UDP), slices.Clone(st.LimitedPorts)
	return &st
}

// Problems returns sentences for a degraded status, such as "firewall not
// applied: operation not permitted (needs CAP_NET_ADMIN)"; nil when all is well.
func (m *Manager) Problems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.problem == "" {
		return nil
	}
	return []string{m.problem}
}

// Close stops the watcher and waits for it. It leaves the table in the
// kernel: a daemon restart must not open the host. Safe to call twice.
func (m *Manager) Close() {
	m.closeOnce.Do(func() { close(m.stop) })
	<-m.done
}
