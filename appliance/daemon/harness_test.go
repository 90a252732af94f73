package daemon_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/capture"
	"github.com/firehose/firehose/appliance/control"
)

// binary is the real firehosectl, built once for all tests (with -race when
// the tests run with it, so the daemon's races fail the tests too).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "firehose-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "firehosectl")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../../cmd/firehosectl")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building firehosectl:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test publishers, their passwords, and their hashes at the lowest cost.
var (
	zuulPass   = "zuul-secret"
	gerritPass = "gerrit-secret"
	hashes     sync.Map
)

func hash(t testing.TB, pw string) string {
	if h, ok := hashes.Load(pw); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes.Store(pw, string(h))
	return string(h)
}

// daemon is a firehosectl serve process started the way systemd starts it.
type daemon struct {
	t       *testing.T
	dir     string
	cfgPath string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	log     *capture.Buffer
	notify  *notifyListener

	// Addresses of the sockets handed over, by name.
	addr map[string]string
	ctl  *control.Client
}

type daemonOpts struct {
	// names of the sockets to hand over the systemd way; default mqtt and ws.
	sockets []string
	// extra TOML appended to the generated config.
	extra string
	// broker keys added to [broker].
	broker string
	// host the handed-over sockets listen on; default 127.0.0.1.
	host string
	// extraFor returns TOML appended to extra once the sockets exist, for
	// config that depends on their addresses; the config is rewritten
	// before the daemon starts.
	extraFor func(addr map[string]string) string
	// netns runs the daemon in this network namespace (ip netns exec).
	netns string
	// stateDir is the broker's state_dir; default a fresh one. Sharing it
	// lets a second daemon take over where a stopped one left off.
	stateDir string
}

// configText renders a config for the daemon's temp dir.
func (d *daemon) configText(o daemonOpts, publishers string) string {
	// Listeners come from systemd; the config binds nothing unless told.
	off := ""
	for _, k := range []string{"mqtt", "websocket", "mqtts", "websocket_tls"} {
		if !strings.Contains(o.broker, k+" =") {
			off += k + " = \"\"\n"
		}
	}
	state := o.stateDir
	if state == "" {
		state = filepath.Join(d.dir, "state")
	}
	return fmt.Sprintf(`[broker]
%sstate_dir = %q
%s
[control]
socket = %q

%s
%s
`, off, state, o.broker, filepath.Join(d.dir, "control.sock"), publishers, o.extra)
}

func zuulPublisher(t testing.TB) string {
	return fmt.Sprintf("[[publisher]]\nusername = \"zuul\"\npassword_hash = %q\ntopics = [\"zuul/#\"]\n", hash(t, zuulPass))
}

func gerritPublisher(t testing.TB) string {
	return fmt.Sprintf("[[publisher]]\nusername = \"gerrit\"\npassword_hash = %q\ntopics = [\"gerrit/#\"]\n", hash(t, gerritPass))
}

// startDaemon starts firehosectl serve with sockets passed as systemd does
// (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and waits for READY=1.
func startDaemon(t *testing.T, o daemonOpts) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, cfgPath: filepath.Join(dir, "firehose.toml"), addr: map[string]string{},
		done: make(chan struct{}), log: &capture.Buffer{}}
	d.ctl = &control.Client{Socket: filepath.Join(dir, "control.sock")}
	d.writeConfig(d.configText(o, zuulPublisher(t)))
	if o.sockets == nil {
		o.sockets = []string{"mqtt", "ws"}
	}
	var files []*os.File
	for _, name := range o.sockets {
		host := "127.0.0.1"
		if o.host != "" {
			host = o.host
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		l.Close() // the dup in f keeps the socket listening
		d.addr[name] = l.Addr().String()
		files = append(files, f)
	}
	if o.extraFor != nil {
		o.extra += o.extraFor(d.addr)
		d.writeConfig(d.configText(o, zuulPublisher(t)))
	}
	d.notify = listenNotify(t, dir)
	argv := []string{"/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary, "serve", "--config", d.cfgPath, "--log-level", "debug"}
	if o.netns != "" {
		argv = append([]string{"ip", "netns", "exec", o.netns}, argv...)
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(os.Environ(),
		fmt.Sprintf("LISTEN_FDS=%d", len(files)),
		"LISTEN_FDNAMES="+strings.Join(o.sockets, ":"),
		"NOTIFY_SOCKET="+d.notify.path,
	)
	d.cmd.ExtraFiles = files
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
		if strings.Contains(d.log.String(), "WARNING: DATA RACE") {
			t.Errorf("the daemon has a data race:\n%s", d.log.String())
		}
	})
	d.waitNotify("READY=1")
	return d
}

func (d *daemon) writeConfig(text string) {
	d.t.Helper()
	if err := os.WriteFile(d.cfgPath, []byte(text), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// waitNotify waits for an sd_notify message containing want. Messages sent
// just before the daemon exits may still be in the socket when it has gone,
// so its exit only shortens the wait.
func (d *daemon) waitNotify(want string) {
	d.t.Helper()
	deadline := time.After(60 * time.Second)
	done := d.done
	for {
		select {
		case m := <-d.notify.msgs:
			if strings.Contains(m, want) {
				return
			}
		case <-done:
			done = nil
			deadline = time.After(5 * time.Second)
		case <-deadline:
			d.t.Fatalf("no %q from the daemon (exited: %v); log:\n%s", want, d.exitErr, d.log.String())
		}
	}
}

func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// run runs firehosectl against this daemon and returns its output and exit code.
func (d *daemon) run(args ...string) (string, int) {
	d.t.Helper()
	return d.output(exec.Command(binary, args...))
}

// output runs cmd and returns everything it printed and its exit code.
func (d *daemon) output(cmd *exec.Cmd) (string, int) {
	d.t.Helper()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return string(out), code
}

func (d *daemon) status() *apitype.Status {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.ctl.Status(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notifyListener is a NOTIFY_SOCKET, as systemd provides.
type notifyListener struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T, dir string) *notifyListener {
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{path: path, msgs: make(chan string, 256)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			select {
			case n.msgs <- string(buf[:k]):
			default:
			}
		}
	}()
	return n
}
