package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

// Issue 15: the TLS socket units held 8883 and 443 open with TLS off, and
// nothing said so. They are no longer enabled by default; when one is
// (by hand, or left enabled by an older package), status says which and how
// to stop it.
func TestTLSOffWithTLSSocketsHandedOverIsDegraded(t *testing.T) {
	d := startDaemon(t, daemonOpts{sockets: []string{"mqtt", "ws", "mqtts", "wss"}})
	st := d.status()
	if st.State != "degraded" || len(st.Reasons) != 2 {
		t.Fatalf("status %s, reasons %q; want degraded with one reason per unserved socket", st.State, st.Reasons)
	}
	for i, name := range []string{"mqtts", "wss"} {
		r := st.Reasons[i]
		for _, want := range []string{d.addr[name], "systemctl disable --now firehose-" + name + ".socket"} {
			if !strings.Contains(r, want) {
				t.Errorf("reason %q does not say %q", r, want)
			}
		}
	}
}

// A daemon that must bind a privileged port itself (TLS on, the wss socket
// unit not enabled) fails with the unit to enable.
func TestStartFailsPrivilegedPortNamesTheSocketUnit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil && strings.TrimSpace(string(b)) != "1024" {
		t.Skipf("unprivileged users may bind ports from %s here", strings.TrimSpace(string(b)))
	}
	dir := worldReadableDir(t)
	cert, key, _ := tlstest.NewCA(t).IssueFiles(t, dir, "server", 24*time.Hour)
	os.Chmod(cert, 0o644) // for nobody, in a directory of this test's own
	os.Chmod(key, 0o644)
	cfg := minimalConfig(dir, fmt.Sprintf("websocket_tls = \"127.0.0.1:443\"\nmqtts = \"\"\nstate_dir = %q", filepath.Join(dir, "state"))) +
		fmt.Sprintf("\n[tls]\nmode = \"files\"\ncert_file = %q\nkey_file = %q\n", cert, key)
	os.Mkdir(filepath.Join(dir, "state"), 0o755)
	os.Chown(filepath.Join(dir, "state"), 65534, 65534)
	code, out := serveOnce(t, serveRun{cfg: cfg, dir: dir, cred: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}})
	expectOneLine(t, code, out, "listener wss", "permission denied", "systemctl enable --now firehose-wss.socket")
}
