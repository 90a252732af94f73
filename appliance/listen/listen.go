// Package listen owns where the broker's sockets come from: sockets handed
// over by systemd (matched by FileDescriptorName), or addresses bound here.
// Both are the same thing to the rest of the appliance, a named net.Listener.
// It also keeps a listener alive through Accept errors such as EMFILE, which
// would otherwise end an accept loop for good.
package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/firehose/firehose/appliance/apitype"
)

// Spec asks for one named socket. Addr is used only when systemd did not hand
// over a socket of that name; Addr "" means the listener is off.
type Spec struct {
	Name string
	Addr string
}

// Socket is an open, named listener and where it came from.
type Socket struct {
	Name   string
	Source string // apitype.SourceSystemd or apitype.SourceBound
	net.Listener
}

// Inherited returns the sockets systemd passed to this process, by name. It
// reads and clears LISTEN_FDS, so it must be called once per process.
func Inherited() (map[string][]net.Listener, error) {
	byName, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("sockets from systemd: %w", err)
	}
	return byName, nil
}

// Open returns one socket per spec, from inherited where a socket of that
// name was handed over, otherwise bound to its address. Inherited sockets that
// no spec asks for are closed and logged, so a port never stays open unserved.
// On error, every socket opened so far is closed.
func Open(specs []Spec, inherited map[string][]net.Listener, log *slog.Logger) ([]*Socket, error) {
	var out []*Socket
	fail := func(err error) ([]*Socket, error) {
		for _, s := range out {
			s.Close()
		}
		return nil, err
	}
	wanted := map[string]bool{}
	for _, sp := range specs {
		wanted[sp.Name] = true
		if ls := inherited[sp.Name]; len(ls) > 0 {
			if len(ls) > 1 {
				return fail(fmt.Errorf("systemd handed over %d sockets named %q; give each listener its own .socket unit", len(ls), sp.Name))
			}
			out = append(out, &Socket{Name: sp.Name, Source: apitype.SourceSystemd, Listener: ls[0]})
			continue
		}
		if sp.Addr == "" {
			continue
		}
		l, err := net.Listen("tcp", sp.Addr)
		if err != nil {
			return fail(fmt.Errorf("listener %s: %w", sp.Name, err))
		}
		out = append(out, &Socket{Name: sp.Name, Source: apitype.SourceBound, Listener: l})
	}
	names := make([]string, 0, len(inherited))
	for name := range inherited {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if wanted[name] {
			continue
		}
		for _, l := range inherited[name] {
			log.Warn("closing a socket systemd handed over: nothing is configured to serve it (mqtts and wss are served only when [tls] mode is not \"off\")", "name", name, "address", l.Addr().String())
			l.Close()
		}
	}
	return out, nil
}

// Resilient wraps l so that Accept retries errors that are not the listener
// being closed, with backoff from 5ms to 1s, logging each burst once. The
// caller's accept loop then ends only when the listener is closed.
func Resilient(l net.Listener, log *slog.Logger) net.Listener {
	return &resilient{Listener: l, log: log}
}

type resilient struct {
	net.Listener
	log    *slog.Logger
	errors atomic.Int64
}

func (r *resilient) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := r.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
			r.log.Error("accept failed; retrying", "listener", r.Addr().String(), "error", err)
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		r.errors.Add(1)
		time.Sleep(delay)
	}
}
