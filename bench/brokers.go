package main

// The two brokers under test, started as children of the bench with
// equivalent settings: anonymous clients may subscribe to anything, only the
// "bench" user may publish, nothing is persisted, plain MQTT and websocket
// listeners on 127.0.0.1. Each run gets a fresh broker so that peak RSS and
// CPU time belong to that run alone.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	pubUser = "bench"
	pubPass = "bench-publisher-secret"
)

// broker is one way to start a broker; the scenario runner knows no more.
type broker interface {
	Name() string
	Version() string
	// Start launches a fresh instance whose files live under dir and returns
	// once it answers MQTT CONNECT on its plain listener.
	Start(ctx context.Context, dir string, o startOpts) (*instance, error)
}

// startOpts are per-run settings of a broker start.
type startOpts struct {
	// gcTrace asks a Go broker for GODEBUG=gctrace=1, so that the idle
	// scenario can await GC cycles and read the live heap from its log.
	gcTrace bool
}

// instance is one running broker process.
type instance struct {
	name    string
	cmd     *exec.Cmd
	mqtt    string
	ws      string
	log     string
	gcTrace bool // the log carries GODEBUG=gctrace=1 lines
	exited  chan struct{}
}

func (in *instance) pid() int { return in.cmd.Process.Pid }

// addr returns the listener for a transport.
func (in *instance) addr(transport string) string {
	if transport == "ws" {
		return in.ws
	}
	return in.mqtt
}

// stop sends SIGTERM, waits a bounded time, then SIGKILLs.
func (in *instance) stop() {
	select {
	case <-in.exited:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.exited
	}
}

// logTail returns the end of the broker's log, for error messages.
func (in *instance) logTail() string {
	b, _ := os.ReadFile(in.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// freePort picks an unused port below the kernel's ephemeral range. The
// bench's own subscribers hold thousands of ephemeral ports (and leave them in
// TIME_WAIT), and a broker that binds its websocket listener without
// SO_REUSEADDR would then collide with them; below the range nobody
// auto-assigns. Another process could still take the port before the broker
// binds it: Start then fails readiness and is retried with a new one.
func freePort() (string, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const base = 10000
	if lo <= base+1000 {
		lo = base + 1000 // a tiny or odd range: still pick from 10000 up
	}
	for i := 0; i < 100; i++ {
		port := base + rand.IntN(lo-base)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", errors.New("no free port found below the ephemeral range")
}

// launch starts argv with output to a log file and waits for readiness.
// env is added to the bench's own environment (tuning knobs such as GOGC).
func launch(ctx context.Context, name, dir string, mqtt, ws string, env []string, argv ...string) (*instance, error) {
	in, err := spawn(name, dir, mqtt, ws, env, argv...)
	if err != nil {
		return nil, err
	}
	if err := in.waitReady(ctx, time.Now().Add(20*time.Second)); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// spawn starts argv with output to dir/name.log and returns at once.
func spawn(name, dir string, mqtt, ws string, env []string, argv ...string) (*instance, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// Die with the bench, even on SIGKILL of the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	in := &instance{name: name, cmd: cmd, mqtt: mqtt, ws: ws, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(in.exited) }()
	return in, nil
}

// waitReady polls until the instance answers MQTT CONNECT (and its
// websocket port accepts connections), it exits, or the deadline passes.
func (in *instance) waitReady(ctx context.Context, deadline time.Time) error {
	var last error
	for {
		select {
		case <-in.exited:
			return fmt.Errorf("%s exited during startup: %s", in.name, in.logTail())
		default:
		}
		if last = probe(ctx, in.mqtt); last == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready on %s: %v; log: %s", in.name, in.mqtt, last, in.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if in.ws != "" {
		// The websocket listener may come up after the plain one.
		for {
			c, err := net.DialTimeout("tcp", in.ws, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s websocket listener %s not ready: %v", in.name, in.ws, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// startRetry retries start a couple of times: a port picked by freePort can
// be taken by another process in between.
func startRetry(ctx context.Context, start func() (*instance, error)) (*instance, error) {
	var err error
	for i := 0; i < 3; i++ {
		var in *instance
		if in, err = start(); err == nil {
			return in, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// mosquitto runs Debian's mosquitto.
type mosquitto struct {
	bin, passwdBin string
	version        string
}

func newMosquitto(bin string) (*mosquitto, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("mosquitto not found (%v): apt-get install mosquitto", err)
	}
	pw, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		return nil, fmt.Errorf("mosquitto_passwd not found (%v): apt-get install mosquitto", err)
	}
	// `mosquitto -h` prints the version on its first line and exits non-zero.
	out, _ := exec.Command(path, "-h").CombinedOutput()
	v, _, _ := strings.Cut(string(out), "\n")
	return &mosquitto{bin: path, passwdBin: pw, version: strings.TrimSpace(v)}, nil
}

func (m *mosquitto) Name() string    { return "mosquitto" }
func (m *mosquitto) Version() string { return m.version }

func (m *mosquitto) Start(ctx context.Context, dir string, _ startOpts) (*instance, error) {
	passwd := filepath.Join(dir, "passwd")
	_ = os.Remove(passwd)
	if out, err := exec.Command(m.passwdBin, "-b", "-c", passwd, pubUser, pubPass).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mosquitto_passwd: %v: %s", err, out)
	}
	// Topic lines before any "user" line apply to anonymous clients
	// (mosquitto.conf(5), acl_file).
	acl := "topic read #\n\nuser " + pubUser + "\ntopic read #\ntopic write bench/#\n"
	aclPath := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclPath, []byte(acl), 0o600); err != nil {
		return nil, err
	}
	return startRetry(ctx, func() (*instance, error) {
		mq, err1 := freePort()
		ws, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		_, mqPort, _ := net.SplitHostPort(mq)
		_, wsPort, _ := net.SplitHostPort(ws)
		conf := strings.Join([]string{
			"# generated by firehose bench",
			"per_listener_settings false",
			"allow_anonymous true",
			"password_file " + passwd,
			"acl_file " + aclPath,
			"persistence false",
			// The bench runs as root; dropping to the mosquitto user would leave
			// the generated files unreadable.
			"user root",
			"max_connections -1",
			"log_dest stderr",
			"log_type error",
			"log_type warning",
			"listener " + mqPort + " 127.0.0.1",
			"protocol mqtt",
			"listener " + wsPort + " 127.0.0.1",
			"protocol websockets",
			"",
		}, "\n")
		confPath := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		return launch(ctx, "mosquitto", dir, mq, ws, nil, m.bin, "-c", confPath)
	})
}

// appliance runs firehosectl serve from this tree.
type appliance struct {
	name    string
	bin     string
	version string
	hash    string
	env     []string // extra environment, e.g. GOGC=200 for a knob trial
	journal string   // "" (no [journal] section), "on" or "off"
}

// buildAppliance builds ./cmd/firehosectl from the module root into tmp,
// unless bin names a prebuilt binary, and returns the binary's path.
func buildAppliance(ctx context.Context, root, bin, tmp string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "firehosectl")); err != nil {
		return "", fmt.Errorf("no ./cmd/firehosectl in %s yet", root)
	}
	bin = filepath.Join(tmp, "firehosectl")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/firehosectl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/firehosectl: %v: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// newAppliance prepares runs of bin. journal "on" or "off" writes a
// [journal] section with enabled = true or false into every generated
// config (and names the broker appliance-journal-on/-off); a binary that
// does not know the section is refused here, by its own `check`, with its
// message, rather than failing every run later.
// prebuilt says bin came from -appliance-bin rather than from this tree.
func newAppliance(ctx context.Context, root, bin string, prebuilt bool, tmp string, env []string, journal string) (*appliance, error) {
	// Cost 4 is bcrypt's minimum: the hash is checked once per run, by the
	// publisher's CONNECT, and must not weigh on the measurement.
	h, err := bcrypt.GenerateFromPassword([]byte(pubPass), 4)
	if err != nil {
		return nil, err
	}
	v := "tree"
	if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		v = "tree " + strings.TrimSpace(string(out))
	}
	if prebuilt {
		// Not this tree: say which binary, and what it calls itself.
		v = "prebuilt " + bin
		if out, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil {
			v += " (version " + strings.TrimSpace(string(out)) + ")"
		}
	}
	a := &appliance{name: "appliance", bin: bin, hash: string(h), env: env, journal: journal}
	switch journal {
	case "":
	case "on", "off":
		a.name = "appliance-journal-" + journal
		v += ", [journal] enabled = " + strconv.FormatBool(journal == "on")
	default:
		return nil, fmt.Errorf("journal setting %q: want on or off", journal)
	}
	if len(env) > 0 {
		v += " with " + strings.Join(env, " ")
	}
	a.version = v
	if journal != "" {
		if err := a.precheck(ctx, tmp); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// precheck runs `firehosectl check` on a config generated as Start would.
func (a *appliance) precheck(ctx context.Context, tmp string) error {
	dir := filepath.Join(tmp, "check-"+a.name)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	confPath := filepath.Join(dir, "firehose.toml")
	conf := a.config("127.0.0.1:1", "127.0.0.1:2", state, filepath.Join(dir, "control.sock"))
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, a.bin, "check", "--config", confPath).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "journal") {
		return fmt.Errorf("this firehosectl refuses [journal] enabled = %v, so it has no journal yet: %s",
			a.journal == "on", msg)
	}
	return fmt.Errorf("firehosectl check refuses the generated config: %v: %s", err, msg)
}

func (a *appliance) Name() string    { return a.name }
func (a *appliance) Version() string { return a.version }

// config is the generated firehose.toml: listeners on 127.0.0.1, one
// publisher account, loopback exempt from the per-address limits (the load
// generator connects up to 1,000 subscribers per 127.0.0.x address;
// Mosquitto has no such limit), everything else at its default.
func (a *appliance) config(mq, ws, state, sock string) string {
	conf := fmt.Sprintf(`# generated by firehose bench
[broker]
mqtt = %q
websocket = %q
mqtts = ""
websocket_tls = ""
max_clients = 50000
max_packet_size = 1048576
connect_timeout = "10s"
state_dir = %q

[control]
socket = %q

[[publisher]]
username = %q
password_hash = %q
topics = ["bench/#"]

[limits]
exempt_addresses = ["127.0.0.0/8"]
`, mq, ws, state, sock, pubUser, a.hash)
	if a.journal != "" {
		conf += fmt.Sprintf("\n[journal]\nenabled = %v\n", a.journal == "on")
	}
	return conf
}

func (a *appliance) Start(ctx context.Context, dir string, o startOpts) (*instance, error) {
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	env := a.env
	if o.gcTrace {
		env = withGCTrace(env)
	}
	return startRetry(ctx, func() (*instance, error) {
		mq, err1 := freePort()
		ws, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		sock := filepath.Join(dir, "control.sock")
		_ = os.Remove(sock)
		confPath := filepath.Join(dir, "firehose.toml")
		if err := os.WriteFile(confPath, []byte(a.config(mq, ws, state, sock)), 0o600); err != nil {
			return nil, err
		}
		in, err := launch(ctx, "appliance", dir, mq, ws, env, a.bin, "serve", "--config", confPath)
		if in != nil {
			in.gcTrace = o.gcTrace
		}
		return in, err
	})
}

// withGCTrace adds gctrace=1 to GODEBUG, keeping any GODEBUG settings of
// -appliance-env (and otherwise the bench's own environment's).
func withGCTrace(env []string) []string {
	out := []string{}
	godebug := os.Getenv("GODEBUG")
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GODEBUG="); ok {
			godebug = v
			continue
		}
		out = append(out, e)
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+"gctrace=1")
}
