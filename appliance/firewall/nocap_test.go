package firewall

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firehose/firehose/appliance/capture"
)

// TestWithoutCapNetAdmin runs the Manager as an unprivileged user (a copy of
// this test binary started as nobody): it must report the missing capability
// in Update, Status and Problems, log it once however often it retries,
// and otherwise carry on.
func TestWithoutCapNetAdmin(t *testing.T) {
	if os.Getenv("FIREHOSE_FW_NOCAP_CHILD") == "1" {
		noCapChild(t)
		return
	}
	needRoot(t)
	srv := newNetNS(t, "srv")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// nobody must be able to reach and run the copy.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "firewall.test")
	copyFile(t, exe, bin)

	cmd := exec.Command(bin, "-test.run=^TestWithoutCapNetAdmin$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FIREHOSE_FW_NOCAP_CHILD=1", "FIREHOSE_FW_NETNS=/run/netns/"+srv.name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	out, err := cmd.CombinedOutput()
	timer.Stop()
	if err != nil || !strings.Contains(string(out), "child: all checks passed") {
		t.Fatalf("unprivileged run: %v\n%s", err, out)
	}
	if ok, err := tablePresent(mustConn(t, srv.fd)); err != nil || ok {
		t.Fatalf("table present after an unprivileged run: %v, %v", ok, err)
	}
}

func noCapChild(t *testing.T) {
	if unix.Geteuid() == 0 {
		t.Fatal("child runs as root; the test would prove nothing")
	}
	fd, err := unix.Open(os.Getenv("FIREHOSE_FW_NETNS"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var logs capture.Buffer
	m := NewManager(slog.New(slog.NewTextHandler(&logs, nil)), WithNetNS(fd), WithHealInterval(20*time.Millisecond))
	defer m.Close()

	const want = "firewall not applied: operation not permitted (needs CAP_NET_ADMIN)"
	err = m.Update(testConfig())
	if err == nil || err.Error() != want {
		t.Fatalf("Update = %v, want %q", err, want)
	}
	if p := m.Problems(); !slices.Equal(p, []string{want}) {
		t.Errorf("Problems = %q, want [%q]", p, want)
	}
	st := m.Status()
	if !st.Enabled || st.InPlace || !strings.Contains(st.LastError, "CAP_NET_ADMIN") || !st.LastApplied.IsZero() {
		t.Errorf("status = %+v", st)
	}
	// Let the watcher retry a few times: still degraded, logged once.
	first := time.Now()
	eventually(t, 10*time.Second, "three retries", func() bool {
		return m.Status().LastChecked.After(first.Add(60 * time.Millisecond))
	})
	if n := strings.Count(logs.String(), "needs CAP_NET_ADMIN"); n != 1 {
		t.Errorf("the missing capability was logged %d times, want once:\n%s", n, logs.String())
	}
	if p := m.Problems(); !slices.Equal(p, []string{want}) {
		t.Errorf("Problems after retries = %q", p)
	}

	// Disabled: nothing to do, so not degraded.
	off := testConfig()
	off.Firewall.Enabled = false
	if err := m.Update(off); err != nil {
		t.Errorf("Update(enabled = false) = %v, want nil", err)
	}
	if p := m.Problems(); p != nil {
		t.Errorf("Problems when disabled = %q, want none", p)
	}
	// An explicit remove must say it could not.
	if err := m.Remove(); err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("Remove = %v, want the missing capability", err)
	}
	if !t.Failed() {
		t.Log("child: all checks passed")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
