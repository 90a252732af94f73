package daemon_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runEnv runs firehosectl with env added to a copy of this process's
// environment without FIREHOSE_*, and returns everything it printed.
func (d *daemon) runEnv(env []string, args ...string) (string, int) {
	d.t.Helper()
	cmd := exec.Command(binary, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FIREHOSE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return d.output(cmd)
}

// Issue 15: status and reload without --config, against a daemon started
// with another config (the README's local quick start), said "not running".
func TestStatusAndReloadFindTheDaemonFromFIREHOSE_CONFIG(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	env := []string{"FIREHOSE_CONFIG=" + d.cfgPath}
	if out, code := d.runEnv(env, "status"); code != 0 || !strings.Contains(out, "state:") {
		t.Errorf("status with FIREHOSE_CONFIG: exit %d:\n%s", code, out)
	}
	if out, code := d.runEnv(env, "reload"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Errorf("reload with FIREHOSE_CONFIG: exit %d:\n%s", code, out)
	}
	if out, code := d.runEnv([]string{"FIREHOSE_SOCKET=" + d.ctl.Socket}, "status"); code != 0 {
		t.Errorf("status with FIREHOSE_SOCKET: exit %d:\n%s", code, out)
	}
	// When nothing answers, it says which socket it tried, why that one,
	// how to name another, and units that exist.
	missing := d.dir + "/nowhere.toml"
	out, code := d.runEnv(nil, "status", "--config", missing)
	for _, want := range []string{"not running", "/run/firehose/control.sock", missing + " does not exist", "--config FILE", "FIREHOSE_CONFIG", "--socket PATH", "systemctl start firehose "} {
		if code != 3 || !strings.Contains(out, want) {
			t.Errorf("status with no daemon there: exit %d, output does not say %q:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "firehose.socket") {
		t.Errorf("status names a unit that does not exist (firehose.socket):\n%s", out)
	}
}

// Issue 15: with a broken config file, reload --config F and status --config
// F said "not running" (exit 3): the socket path was read from the file that
// no longer parsed. The operator needs the file's errors, exit 1.
func TestReloadAndStatusWithABrokenConfigFile(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"bad_value", `connect_timeout = "10"`, "broker.connect_timeout"},
		{"not_toml", `connect_timeout = = 10s`, "firehose.toml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, daemonOpts{})
			// The control socket is written after the broken line.
			d.writeConfig(d.configText(daemonOpts{broker: tc.text}, zuulPublisher(t)))
			out, code := d.runEnv(nil, "reload", "--config", d.cfgPath)
			if code != 1 || !strings.Contains(out, "reload refused") || !strings.Contains(out, tc.want) {
				t.Fatalf("reload --config with a broken file: exit %d:\n%s\nwant exit 1 with the file's error", code, out)
			}
			out, code = d.runEnv(nil, "status", "--config", d.cfgPath)
			if code != 1 || !strings.Contains(out, "degraded") || !strings.Contains(out, tc.want) {
				t.Fatalf("status --config with a broken file: exit %d:\n%s", code, out)
			}
		})
	}
}
