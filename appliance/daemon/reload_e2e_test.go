package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 10: with a FIFO at the config path, SIGHUP made the reload block for
// ever, and SIGTERM no longer stopped the daemon.
func TestReloadRefusesNonRegularFilesAndNeverBlocksShutdown(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")

	// A FIFO named as a Gerrit key: refused by name, file, line and key.
	fifoKey := filepath.Join(d.dir, "key.fifo")
	if err := syscall.Mkfifo(fifoKey, 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(d.dir, "known_hosts")
	os.WriteFile(knownHosts, nil, 0o644)
	d.writeConfig(d.configText(daemonOpts{extra: fmt.Sprintf("[[gerrit]]\nname = \"g\"\nhost = \"127.0.0.1\"\nuser = \"u\"\nkey_file = %q\nknown_hosts = %q\n", fifoKey, knownHosts)}, zuulPublisher(t)))
	out, code := d.run("reload", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "gerrit[0].key_file") || !strings.Contains(out, "not a regular file (a named pipe)") {
		t.Fatalf("reload with a FIFO as key_file: exit %d:\n%s", code, out)
	}

	// The config itself replaced by a FIFO, then SIGHUP.
	os.Remove(d.cfgPath)
	if err := syscall.Mkfifo(d.cfgPath, 0o644); err != nil {
		t.Fatal(err)
	}
	before := d.status().LastReload.Time
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the SIGHUP reload to be refused", func() bool {
		r := d.status().LastReload
		return r != nil && r.Time.After(before)
	})
	if r := d.status().LastReload; r.OK || !strings.Contains(r.Error, d.cfgPath+": not a regular file (a named pipe)") {
		t.Fatalf("last reload = %+v, want refused: not a regular file", r)
	}
	out, code = d.run("reload", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "not a regular file") {
		t.Fatalf("firehosectl reload with a FIFO config: exit %d:\n%s", code, out)
	}
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/still", "serving")
	s.expect("zuul/still", "serving")

	// SIGHUP storms coalesce, and SIGTERM still stops the daemon.
	for range 20 {
		d.cmd.Process.Signal(syscall.SIGHUP)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("SIGTERM did not stop the daemon within 30s; log:\n%s", d.log.String())
	}
	if !strings.Contains(d.log.String(), `msg=stopped`) {
		t.Errorf("the daemon did not stop cleanly; log:\n%s", d.log.String())
	}
}
