package listen

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/firehose/firehose/appliance/apitype"
)

// flaky fails Accept with EMFILE a few times, as a process out of file
// descriptors does, then accepts for real.
type flaky struct {
	net.Listener
	fails int
}

func (f *flaky) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

func TestResilientSurvivesEMFILE(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := Resilient(&flaky{Listener: l, fails: 5}, slog.New(slog.NewTextHandler(&logs, nil)))
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Close()
		}
	}()
	c, err := r.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	c.Close()
	if n := strings.Count(logs.String(), "accept failed"); n != 1 {
		t.Errorf("logged %d times for one burst of errors, want once:\n%s", n, logs.String())
	}
	l.Close()
	if _, err := r.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener = %v, want net.ErrClosed", err)
	}
}

func TestOpenPrefersInheritedAndClosesUnasked(t *testing.T) {
	mqtt, _ := net.Listen("tcp", "127.0.0.1:0")
	unasked, _ := net.Listen("tcp", "127.0.0.1:0")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	socks, err := Open([]Spec{{"mqtt", "127.0.0.1:1"}, {"ws", "127.0.0.1:0"}, {"off", ""}},
		map[string][]net.Listener{"mqtt": {mqtt}, "mqtts": {unasked}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	if len(socks) != 2 {
		t.Fatalf("got %d sockets, want mqtt and ws", len(socks))
	}
	if s := socks[0]; s.Name != "mqtt" || s.Source != apitype.SourceSystemd || s.Listener != mqtt {
		t.Errorf("mqtt = %+v, want the inherited socket", s)
	}
	if s := socks[1]; s.Name != "ws" || s.Source != apitype.SourceBound {
		t.Errorf("ws = %+v, want bound", s)
	}
	if _, err := net.Dial("tcp", unasked.Addr().String()); err == nil {
		t.Error("a socket handed over for no configured listener is still open")
	}
	if !strings.Contains(logs.String(), "mqtts") {
		t.Errorf("closing the unasked socket was not logged:\n%s", logs.String())
	}
}

func TestOpenRefusesDuplicateNames(t *testing.T) {
	a, _ := net.Listen("tcp", "127.0.0.1:0")
	b, _ := net.Listen("tcp", "127.0.0.1:0")
	defer a.Close()
	defer b.Close()
	if _, err := Open([]Spec{{"mqtt", ""}}, map[string][]net.Listener{"mqtt": {a, b}}, slog.Default()); err == nil {
		t.Fatal("two sockets named mqtt were accepted")
	}
}
