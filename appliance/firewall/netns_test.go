package firewall

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These helpers build a private network for each test: two network
// namespaces made by the test ("srv", where the rules go, and "cli", which
// probes them) joined by a veth pair. The host's own network is never used.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces and load nftables rules (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs the ip command (iproute2) to create network namespaces")
	}
}

type netns struct {
	name string
	fd   int
}

var nsSeq atomic.Int64

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetNS(t *testing.T, role string) *netns {
	t.Helper()
	return newNetNSPrefixed(t, "fhfw", role)
}

// newNetNSPrefixed names the namespace after the task that made it.
func newNetNSPrefixed(t *testing.T, prefix, role string) *netns {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), nsSeq.Add(1), role)
	run(t, "ip", "netns", "add", name)
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netns{name: name, fd: fd}
}

// do runs f on an OS thread switched into n, so sockets f creates belong to
// n. If the thread cannot be switched back it is left locked and so
// discarded by the runtime when the goroutine ends.
func (n *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		err = f()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// lab is the test network: srv at 10.231.0.1 and fd00:231::1, cli at .2 / ::2.
type lab struct {
	srv, cli *netns
}

const (
	srv4 = "10.231.0.1"
	srv6 = "fd00:231::1"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabPrefixed(t, "fhfw")
}

func newLabPrefixed(t *testing.T, prefix string) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{srv: newNetNSPrefixed(t, prefix, "srv"), cli: newNetNSPrefixed(t, prefix, "cli")}
	run(t, "ip", "-n", l.cli.name, "link", "add", "fhc", "type", "veth", "peer", "name", "fhs", "netns", l.srv.name)
	run(t, "ip", "-n", l.cli.name, "addr", "add", "10.231.0.2/30", "dev", "fhc")
	run(t, "ip", "-n", l.srv.name, "addr", "add", srv4+"/30", "dev", "fhs")
	run(t, "ip", "-n", l.cli.name, "-6", "addr", "add", "fd00:231::2/64", "dev", "fhc", "nodad")
	run(t, "ip", "-n", l.srv.name, "-6", "addr", "add", srv6+"/64", "dev", "fhs", "nodad")
	run(t, "ip", "-n", l.cli.name, "link", "set", "fhc", "up")
	run(t, "ip", "-n", l.srv.name, "link", "set", "fhs", "up")
	return l
}

// listen opens an echo server on port in srv (all addresses, IPv4 and IPv6).
func (l *lab) listen(t *testing.T, port int) {
	t.Helper()
	var ln net.Listener
	err := l.srv.do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %d in %s: %v", port, l.srv.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// dial connects from cli to srv.
func (l *lab) dial(host string, port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.cli.do(func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), timeout)
		return err
	})
	return c, err
}

// Generous for connections that must succeed (the machine is shared and
// busy); short for ones that must not, where a dropped SYN waits it out.
const (
	connectTimeout = 5 * time.Second
	blockedTimeout = 700 * time.Millisecond
)

func (l *lab) mustConnect(t *testing.T, host string, port int) {
	t.Helper()
	c, err := l.dial(host, port, connectTimeout)
	if err != nil {
		t.Fatalf("connect to %s port %d from outside: %v (want connected)", host, port, err)
	}
	c.Close()
}

func (l *lab) mustBeBlocked(t *testing.T, host string, port int) {
	t.Helper()
	c, err := l.dial(host, port, blockedTimeout)
	if err == nil {
		c.Close()
		t.Fatalf("connect to %s port %d from outside succeeded, want it dropped", host, port)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connect to %s port %d: %v, want a timeout (a dropped SYN); anything else means the packet got through", host, port, err)
	}
}

func dialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, d)
}
