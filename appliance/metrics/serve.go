package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// retryMax caps the wait between attempts to bind the address.
const retryMax = 30 * time.Second

// endpoint serves /metrics on one address. An address it cannot bind (in use,
// or an interface not up yet) is retried in the background: monitoring that
// cannot start must not keep the bus from serving, and status says why.
type endpoint struct {
	listen string
	srv    *http.Server
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	addr    string // bound address; "" while not bound
	lastErr error
	closed  bool
}

// Start serves /metrics as c says; with enabled = false it does nothing.
// The address is fixed for the life of the daemon (a reload that changes
// it is refused), so Start is called once.
func (m *Metrics) Start(c config.Metrics) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enabled, m.listen = c.Enabled, c.Listen
	if !c.Enabled || m.ep != nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	ep := &endpoint{
		listen: c.Listen,
		done:   make(chan struct{}),
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    8 << 10,
		},
	}
	m.ep = ep
	ep.wg.Add(1)
	go ep.run(m)
}

func (ep *endpoint) run(m *Metrics) {
	defer ep.wg.Done()
	wait := time.Second
	for {
		ln, err := net.Listen("tcp", ep.listen)
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			if ln != nil {
				ln.Close()
			}
			return
		}
		ep.lastErr = err
		if err == nil {
			ep.addr = ln.Addr().String()
		}
		ep.mu.Unlock()
		if err == nil {
			m.log.Info("serving /metrics", "address", ln.Addr().String())
			// Returns when Close shuts the server down.
			if err := ep.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("metrics endpoint stopped", "error", err)
			}
			return
		}
		m.log.Warn("cannot serve /metrics; retrying", "listen", ep.listen, "error", err, "retry_in", wait)
		select {
		case <-ep.done:
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, retryMax)
	}
}

// Status reports the endpoint for apitype.Status.
func (m *Metrics) Status() *apitype.MetricsStatus {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	st := &apitype.MetricsStatus{Enabled: m.enabled, Listen: m.listen}
	ep := m.ep
	m.mu.Unlock()
	if ep != nil {
		ep.mu.Lock()
		st.Address = ep.addr
		if ep.lastErr != nil {
			st.LastError = ep.lastErr.Error()
		}
		ep.mu.Unlock()
	}
	return st
}

// Problems says why the endpoint is not serving when it should.
func (m *Metrics) Problems() []string {
	st := m.Status()
	if st == nil || !st.Enabled || st.Address != "" {
		return nil
	}
	why := st.LastError
	if why == "" {
		why = "not bound yet"
	}
	return []string{fmt.Sprintf("metrics: cannot serve /metrics on %s: %s (retrying)", st.Listen, why)}
}

// Close stops the endpoint and waits for it; scrapes in progress are cut.
func (m *Metrics) Close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	ep := m.ep
	m.mu.Unlock()
	if ep == nil {
		return
	}
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return
	}
	ep.closed = true
	close(ep.done)
	ep.mu.Unlock()
	_ = ep.srv.Close()
	ep.wg.Wait()
}
