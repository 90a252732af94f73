package daemon_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// sub is a paho subscriber recording what it receives and whether it lost
// its connection.
type sub struct {
	t    *testing.T
	c    paho.Client
	msgs chan paho.Message
	lost atomic.Int32
}

var clientSeq atomic.Int64

func pahoOpts(url, user, pass string) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("test-%d", clientSeq.Add(1))).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	return o
}

// connect connects a paho client and fails the test if it cannot.
func connect(t *testing.T, o *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(o)
	if err := wait(c.Connect()); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func wait(tok paho.Token) error {
	if !tok.WaitTimeout(20 * time.Second) {
		return fmt.Errorf("timed out")
	}
	return tok.Error()
}

func subscribe(t *testing.T, url, filter string) *sub {
	t.Helper()
	s := &sub{t: t, msgs: make(chan paho.Message, 8192)}
	o := pahoOpts(url, "", "").SetConnectionLostHandler(func(paho.Client, error) { s.lost.Add(1) })
	s.c = connect(t, o)
	if err := wait(s.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { s.msgs <- m })); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return s
}

// next returns the next message, failing the test if none comes.
func (s *sub) next() paho.Message {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(20 * time.Second):
		s.t.Fatal("no message within 20s")
		return nil
	}
}

// expect asserts that the next message is topic/payload. Because a broker
// delivers one publisher's messages in order, expecting a marker published
// after something that must not arrive proves it did not.
func (s *sub) expect(topic, payload string) {
	s.t.Helper()
	m := s.next()
	if m.Topic() != topic || string(m.Payload()) != payload {
		s.t.Fatalf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
	}
}

func publish(t *testing.T, url, user, pass, topic, payload string) {
	t.Helper()
	c := connect(t, pahoOpts(url, user, pass))
	if err := wait(c.Publish(topic, 1, false, payload)); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	c.Disconnect(100)
}

// mosquittoPub runs Debian's mosquitto_pub and returns its exit code and output.
func mosquittoPub(t *testing.T, addr string, args ...string) (int, string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mosquitto_pub", append([]string{"-h", host, "-p", port}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("mosquitto_pub: %v (install Debian's mosquitto-clients)", err)
	}
	return 0, string(out)
}

// mosquittoSub runs Debian's mosquitto_sub -v and streams its lines.
type mosqSub struct {
	t     *testing.T
	lines chan string
	cmd   *exec.Cmd
}

func mosquittoSub(t *testing.T, addr string, args ...string) *mosqSub {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mosquitto_sub", append([]string{"-h", host, "-p", port, "-v"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (install Debian's mosquitto-clients)", err)
	}
	s := &mosqSub{t: t, lines: make(chan string, 1000), cmd: cmd}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return s
}

func (s *mosqSub) expect(line string) {
	s.t.Helper()
	select {
	case got, ok := <-s.lines:
		if !ok {
			s.t.Fatalf("mosquitto_sub ended, expected %q", line)
		}
		if got != line {
			s.t.Fatalf("mosquitto_sub printed %q, want %q", got, line)
		}
	case <-time.After(20 * time.Second):
		s.t.Fatalf("mosquitto_sub printed nothing within 20s, want %q", line)
	}
}

// rawConn is a TCP connection that speaks no MQTT unless told to.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads until the server closes c, failing after limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server did not close the connection within %s", limit)
	}
}
