package daemon_test

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/capture"
)

// runAs runs firehosectl as uid/gid, with no supplementary groups, and
// returns its standard output, then everything it printed.
func runAs(t *testing.T, uid uint32, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	var stdout, all capture.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, &all)
	cmd.Stderr = &all
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), all.String(), code
}

// configStrings returns every string value of a TOML document.
func configStrings(t *testing.T, text string) []string {
	t.Helper()
	var m map[string]any
	if _, err := toml.Decode(text, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(m)
	return out
}

// Issue 10: the control socket is 0666 and status showed everyone the last
// reload error, which quotes config values, secrets included.
func TestStatusRevealsNoConfigValueToOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	gerrit := "[[gerrit]]\nname = \"internal-review\"\nhost = \"review.internal.example\"\nuser = \"firehose-bot\"\n" +
		"key_file = \"/etc/firehose/credentials/gerrit/key\"\nknown_hosts = \"/etc/firehose/known_hosts\"\n"
	d := startDaemon(t, daemonOpts{})
	subscribe(t, "tcp://"+d.addr["mqtt"], "#")
	running, _ := os.ReadFile(d.cfgPath)
	// A reload that fails quoting a value; the running config stays.
	broken := d.configText(daemonOpts{broker: `connect_timeout = "hunter2-secret"`}, zuulPublisher(t)) + gerrit
	d.writeConfig(broken)
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 1 || !strings.Contains(out, "hunter2-secret") {
		t.Fatalf("the failing reload: exit %d:\n%s", code, out)
	}
	// systemd's STATUS= is readable by every user (systemctl status).
	deadline := time.After(60 * time.Second)
	for seen := false; !seen; {
		select {
		case m := <-d.notify.msgs:
			if strings.Contains(m, "hunter2-secret") {
				t.Fatalf("sd_notify shows the config value to everyone: %q", m)
			}
			seen = strings.Contains(m, "STATUS=degraded")
		case <-deadline:
			t.Fatal("no STATUS=degraded after the failed reload")
		}
	}
	// Root sees everything (so the secret is there to hide).
	if out, _ := d.run("status", "--json", "--socket", d.ctl.Socket); !strings.Contains(out, "hunter2-secret") || !strings.Contains(out, "zuul") {
		t.Fatalf("root's status lacks the reload error or the publishers:\n%s", out)
	}

	// Let nobody reach the binary and the socket.
	worldReadableDir(t)
	for _, dir := range []string{d.dir, filepath.Dir(d.dir)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	js, jsAll, code := runAs(t, 65534, "status", "--json", "--socket", d.ctl.Socket)
	var st apitype.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("nobody's status --json (exit %d) is not the API's JSON: %v\n%s", code, err, js)
	}
	_, human, hcode := runAs(t, 65534, "status", "--socket", d.ctl.Socket)
	if code != 1 || hcode != 1 || st.State != apitype.StateDegraded || !st.Redacted || st.LastReload == nil || st.LastReload.OK {
		t.Fatalf("nobody's status: exit %d/%d, %+v; want degraded (the failed reload), redacted", code, hcode, st)
	}
	if !strings.Contains(human, "sudo firehosectl status") {
		t.Errorf("nobody's status does not say where the details are:\n%s", human)
	}
	for _, v := range append(configStrings(t, string(running)), configStrings(t, broken)...) {
		if len(v) < 4 {
			continue
		}
		for name, out := range map[string]string{"status --json": jsAll, "status": human} {
			if strings.Contains(out, v) {
				t.Errorf("nobody's %s shows the config value %q:\n%s", name, v, out)
			}
		}
	}
	// What is public is still there.
	if st.Clients != 1 || len(st.Listeners) != 2 || st.Version == "" {
		t.Errorf("nobody's status lost its public part: %+v", st)
	}
	if _, out, code := runAs(t, 65534, "reload", "--socket", d.ctl.Socket); code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody's reload: exit %d:\n%s", code, out)
	}
}
