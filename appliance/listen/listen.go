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
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

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
// reads and clears LISTEN_FDS, so it must be called once per process. A
// descriptor that is not a listening TCP socket is an error naming it (go-
// systemd would skip it silently, and the daemon would then bind the
// configured address instead, or serve nothing there).
func Inherited() (map[string][]net.Listener, error) {
	files := activation.Files(true)
	defer func() {
		for _, f := range files {
			f.Close() // net.FileListener keeps its own descriptor
		}
	}()
	byName := map[string][]net.Listener{}
	fail := func(err error) (map[string][]net.Listener, error) {
		for _, ls := range byName {
			for _, l := range ls {
				l.Close()
			}
		}
		return nil, err
	}
	for _, f := range files {
		if err := checkListening(f); err != nil {
			return fail(fmt.Errorf("socket %q from systemd (fd %d): %w", f.Name(), f.Fd(), err))
		}
		l, err := net.FileListener(f)
		if err != nil {
			return fail(fmt.Errorf("socket %q from systemd (fd %d): %w", f.Name(), f.Fd(), err))
		}
		byName[f.Name()] = append(byName[f.Name()], l)
	}
	return byName, nil
}

// checkListening says what is wrong with fd for a listener, in the terms of
// the .socket unit that would fix it.
func checkListening(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("not an open descriptor (%v)", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("not a socket; its unit must use ListenStream=")
	}
	fd := int(f.Fd())
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return errors.New("not a stream socket; its unit must use ListenStream=, not ListenDatagram= or ListenSequentialPacket=")
	}
	if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || (dom != unix.AF_INET && dom != unix.AF_INET6) {
		return errors.New("not a TCP socket; its unit must use ListenStream=[ADDRESS:]PORT")
	}
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc != 1 {
		return errors.New("not listening (a connection, as Accept=yes hands over); its unit must use Accept=no")
	}
	return nil
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
