package tlsconf

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

// parseConfig parses a firehose.toml whose [broker] state_dir is dir, so
// errors carry real line numbers.
func parseConfig(t *testing.T, dir, body string) *config.Config {
	t.Helper()
	src := fmt.Sprintf("[broker]\nstate_dir = %q\n%s", dir, body)
	c, err := config.Parse(filepath.Join(dir, "firehose.toml"), []byte(src))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	return c
}

func filesConfig(t *testing.T, dir, certFile, keyFile string) *config.Config {
	t.Helper()
	return parseConfig(t, dir, fmt.Sprintf("[tls]\nmode = \"files\"\ncert_file = %q\nkey_file = %q\n", certFile, keyFile))
}

// testLogger sends log lines to t.Log until the test ends; certmagic and
// Pebble log from goroutines that may outlive it.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlstest.LogWriter(t, ""), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serveEcho accepts TLS connections on ln (already wrapped by the caller)
// and echoes lines back until ln closes.
func serveEcho(t *testing.T, ln net.Listener) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dial connects with TLS, verifying against roots as "localhost".
func dial(t *testing.T, addr string, roots *x509.CertPool, protos ...string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: protos})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo proves a connection still carries data both ways.
func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != msg+"\n" {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func peerSerial(c *tls.Conn) *big.Int {
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newManager builds a Manager for c, failing the test if it cannot, and
// closes it when the test ends.
func newManager(t *testing.T, c *config.Config) *Manager {
	t.Helper()
	m, err := New(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}
