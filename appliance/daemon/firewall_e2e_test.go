package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The daemon applies its table before READY, puts it back when it is
// removed behind its back, changes it on reload, and leaves it in place when
// it stops (a restart must not open the host). The rules themselves are
// tested from outside in appliance/firewall; this is the daemon's part.
func TestFirewallAppliedBeforeReadyHealedAndReloaded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and load nftables rules (CI runs as root)")
	}
	ns := fmt.Sprintf("fh-daemon-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	nft := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: install Debian's nftables (make deps)")
	}

	fw := "[firewall]\nenabled = true\nallow_tcp = [22]\n"
	o := daemonOpts{sockets: []string{}, netns: ns, broker: "mqtt = \"127.0.0.1:1883\"\n", extra: fw}
	d := startDaemon(t, o)

	// In place when READY came, before any poll.
	st := d.status()
	if st.Firewall == nil || !st.Firewall.InPlace || st.State != "ok" {
		t.Fatalf("at READY: firewall %+v, state %s %v", st.Firewall, st.State, st.Reasons)
	}
	if out, err := nft("list", "table", "inet", "firehose"); err != nil || !strings.Contains(out, "tcp dport { 22, 1883 } accept") {
		t.Fatalf("nft list table inet firehose: %v\n%s", err, out)
	}

	if out, err := nft("delete", "table", "inet", "firehose"); err != nil {
		t.Fatalf("nft delete table: %v: %s", err, out)
	}
	eventually(t, "the daemon to put its table back", func() bool {
		f := d.status().Firewall
		return f.Reapplied >= 1 && f.InPlace
	})
	if _, err := nft("list", "table", "inet", "firehose"); err != nil {
		t.Fatal("status says the table is back, the kernel does not have it")
	}

	d.writeConfig(d.configText(daemonOpts{broker: o.broker, extra: strings.Replace(fw, "[22]", "[22, 2222]", 1)}, zuulPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	if f := d.status().Firewall; !slices.Contains(f.TCP, 2222) {
		t.Fatalf("after reload the firewall accepts %v, want 2222 among them", f.TCP)
	}
	if out, _ := nft("list", "table", "inet", "firehose"); !strings.Contains(out, "2222") {
		t.Fatalf("kernel table after reload:\n%s", out)
	}

	d.stop()
	if _, err := nft("list", "table", "inet", "firehose"); err != nil {
		t.Fatal("the table was removed when the daemon stopped; a restart would leave the host open")
	}
}
