package cli

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/firehose/firehose/appliance/apitype"
)

// run calls Main with args and returns the exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	Stdout, Stderr = &out, &errOut
	defer func() { Stdout, Stderr = os.Stdout, os.Stderr }()
	code := Main(append([]string{"firehosectl"}, args...))
	return code, out.String(), errOut.String()
}

// Issue 15: `sub --help` printed "Incorrect Usage: flag: help requested" and
// exited 1, since -h is the host.
func TestSubHelp(t *testing.T) {
	code, out, errOut := run(t, "sub", "--help")
	if code != 0 || !strings.Contains(out, "--topic value, -t value") || strings.Contains(out+errOut, "Incorrect Usage") {
		t.Fatalf("sub --help: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// -h is still the host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	code, _, errOut = run(t, "sub", "-h", "127.0.0.1", "-p", itoa(addr.Port), "-t", "x")
	if code != 1 || !strings.Contains(errOut, "connecting to tcp://"+addr.String()) {
		t.Fatalf("sub -h 127.0.0.1 to a closed port: exit %d: %s", code, errOut)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Issue 15: status printed "firewall: disabled (table inet inet firehose)";
// the daemon's Table already names the family.
func TestStatusNamesTheFirewallTableOnce(t *testing.T) {
	var out bytes.Buffer
	Stdout = &out
	defer func() { Stdout = os.Stdout }()
	printStatus(&apitype.Status{Firewall: &apitype.FirewallStatus{Table: "inet firehose"}})
	if !strings.Contains(out.String(), "disabled (table inet firehose)\n") || strings.Contains(out.String(), "inet inet") {
		t.Fatalf("status shows:\n%s", out.String())
	}
}

// The human status says where /metrics is served, or why it is not.
func TestStatusShowsMetrics(t *testing.T) {
	for _, c := range []struct {
		m    apitype.MetricsStatus
		want string
	}{
		{apitype.MetricsStatus{}, "metrics:  off\n"},
		{apitype.MetricsStatus{Enabled: true, Listen: "127.0.0.1:0", Address: "127.0.0.1:9883"}, "metrics:  http://127.0.0.1:9883/metrics\n"},
		{apitype.MetricsStatus{Enabled: true, Listen: "127.0.0.1:9883", LastError: "address in use"}, "metrics:  not serving on 127.0.0.1:9883: address in use\n"},
	} {
		var out bytes.Buffer
		Stdout = &out
		m := c.m
		printStatus(&apitype.Status{Metrics: &m})
		Stdout = os.Stdout
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("status shows:\n%s\nwant %q", out.String(), c.want)
		}
	}
}

// Issue 15: an unstamped build (go run, go test) said "dev" and no more.
func TestVersionSaysWhenUnstamped(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.Contains(out, "built without a version stamp") || !strings.Contains(out, "make build") {
		t.Fatalf("version: exit %d: %q", code, out)
	}
}
