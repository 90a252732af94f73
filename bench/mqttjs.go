package main

// Scenario (f): a burst of JSON events to websocket subscribers that run
// MQTT.js (npm "mqtt") in one Node process, a client library nobody here
// wrote, as the firehose's web users do. bench/mqttjs/burst.js is the Node
// side; `make deps` installs MQTT.js into .cache/node (bench/bench.mk).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// nodeModules is where `make deps` installs the npm packages, relative to
// the module root (gitignored; the page's browser test shares it).
const nodeModules = ".cache/node/node_modules"

// burstTopic is a Gerrit-shaped topic under the publisher's bench/#.
const burstTopic = "bench/gerrit/openstack/nova/comment-added"

// mqttJS locates Node, the script and the installed MQTT.js.
type mqttJS struct {
	node    string
	script  string
	modules string
	version string // "mqtt.js 5.16.0, node v20.20.2"
}

func findMQTTJS(root string) (*mqttJS, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found (%v): scenario f needs Node.js", err)
	}
	m := &mqttJS{node: node, script: filepath.Join(root, "bench", "mqttjs", "burst.js"), modules: filepath.Join(root, nodeModules)}
	if _, err := os.Stat(m.script); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(m.modules, "mqtt", "package.json"))
	if err != nil {
		return nil, fmt.Errorf("MQTT.js is not installed in %s: run `make deps` (npm install --prefix .cache/node mqtt)", nodeModules)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("%s/mqtt/package.json: %w", nodeModules, err)
	}
	nv, _ := exec.Command(node, "--version").Output()
	m.version = fmt.Sprintf("mqtt.js %s, node %s", pkg.Version, strings.TrimSpace(string(nv)))
	return m, nil
}

// nodeArgs is the one JSON argument of burst.js.
type nodeArgs struct {
	URL      string `json:"url"`
	N        int    `json:"n"`
	Filter   string `json:"filter"`
	QoS      int    `json:"qos"`
	Msgs     int    `json:"msgs"`
	SeqOff   int    `json:"seqOff"`
	SentOff  int    `json:"sentOff"`
	Width    int    `json:"width"`
	Report   string `json:"report"`
	IDPrefix string `json:"idPrefix"`
	Parallel int    `json:"parallel"`
}

// nodeReport is what burst.js writes at the end.
type nodeReport struct {
	Subs []struct {
		N        int64   `json:"n"`
		Dups     int64   `json:"dups"`
		Reorders int64   `json:"reorders"`
		LastUs   int64   `json:"last_us"`
		Error    string  `json:"error"`
		LatUs    []int64 `json:"lat_us"`
	} `json:"subs"`
}

// nodeProc is a running burst.js.
type nodeProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line; closed at EOF
	stderr *tailBuffer
	exited chan struct{}

	total  atomic.Int64 // from "progress" lines
	lastUs atomic.Int64
}

func startNode(m *mqttJS, args nodeArgs) (*nodeProc, error) {
	js, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(m.node, m.script, string(js))
	cmd.Env = append(os.Environ(), "NODE_PATH="+m.modules)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &nodeProc{cmd: cmd, lines: make(chan string, 1024), stderr: &tailBuffer{max: 4096}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "progress "); ok {
				// Progress goes to the counters, not the channel: it is
				// only ever read as "the latest".
				if t, us, ok := strings.Cut(rest, " "); ok {
					n, _ := strconv.ParseInt(t, 10, 64)
					u, _ := strconv.ParseInt(us, 10, 64)
					p.total.Store(n)
					p.lastUs.Store(u)
				}
				continue
			}
			p.lines <- line
		}
		close(p.lines)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// expect waits for a stdout line starting with want, failing on "fail",
// on EOF, and at the deadline.
func (p *nodeProc) expect(ctx context.Context, want string, deadline time.Time) (string, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("MQTT.js subscribers exited before %q: %s", want, p.stderr.String())
			}
			if rest, ok := strings.CutPrefix(line, "fail "); ok {
				return "", fmt.Errorf("MQTT.js subscribers: %s", rest)
			}
			if strings.HasPrefix(line, want) {
				return line, nil
			}
		case <-timer.C:
			return "", fmt.Errorf("MQTT.js subscribers: no %q in time (%d deliveries so far)", want, p.total.Load())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// kill ends the process and waits for it.
func (p *nodeProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// runMQTTJS measures (f).
func runMQTTJS(ctx context.Context, in *instance, sc scenario, d *dialer, o runOpts, runID, dir string, res *runResult) error {
	if o.mqttjs == nil {
		return errors.New("MQTT.js is not available")
	}
	pid := in.pid()
	_, seqOff, sentOff, err := jsonPayload(sc.Payload)
	if err != nil {
		return err
	}
	report := filepath.Join(dir, "mqttjs-report.json")
	t := time.Now()
	np, err := startNode(o.mqttjs, nodeArgs{
		URL: "ws://" + in.ws + "/mqtt", N: sc.Subs, Filter: benchFilter, QoS: int(sc.QoS), Msgs: sc.Msgs,
		SeqOff: seqOff, SentOff: sentOff, Width: jsonNumWidth, Report: report, IDPrefix: runID, Parallel: 16,
	})
	if err != nil {
		return fmt.Errorf("starting node: %w", err)
	}
	defer np.kill()
	half := t.Add(o.runTimeout / 2)
	if _, err := np.expect(ctx, "ready", half); err != nil {
		return err
	}
	res.ConnectSeconds = time.Since(t).Seconds()

	p, err := connectPublisher(ctx, d, in.mqtt, pubUser, pubPass, runID+"-pub",
		pubSpec{topic: burstTopic, size: sc.Payload, json: true, qos: sc.QoS})
	if err != nil {
		return err
	}
	defer p.close()
	if err := p.send(0); err != nil {
		return fmt.Errorf("warm-up publish: %w", err)
	}
	if _, err := np.expect(ctx, "warm", half); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	cpu0, _ := cpuSeconds(pid)
	node0, _ := cpuSeconds(np.cmd.Process.Pid)
	self0 := selfCPUSeconds()
	deadline, _ := ctx.Deadline()
	_ = p.c.SetWriteDeadline(deadline)
	var published atomic.Int64
	t0us := time.Now().UnixMicro()
	pubDone := publishAll(ctx, p, sc, monoNow(), &published)
	pubErr := awaitDeliveries(ctx, pubDone, &published, sc.Subs, o, np.total.Load)
	cpu1, _ := cpuSeconds(pid)
	node1, _ := cpuSeconds(np.cmd.Process.Pid)
	res.BrokerCPUSeconds = cpu1 - cpu0
	res.BenchCPUSeconds = selfCPUSeconds() - self0 + node1 - node0
	res.Published = int(published.Load())
	// A broker may deliver before it acknowledges: PINGRESP comes after
	// every PUBACK due for what was published before it.
	if err := p.sync(30 * time.Second); err != nil && pubErr == nil {
		pubErr = err
	}
	res.Acked = p.acked.Load()
	p.close()

	// Ask for the report: stdin EOF.
	np.stdin.Close()
	if _, err := np.expect(context.Background(), "end", time.Now().Add(30*time.Second)); err != nil {
		return err
	}
	b, err := os.ReadFile(report)
	if err != nil {
		return err
	}
	var rep nodeReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("MQTT.js report: %w", err)
	}
	if len(rep.Subs) != sc.Subs {
		return fmt.Errorf("MQTT.js report has %d subscribers, want %d", len(rep.Subs), sc.Subs)
	}
	res.Expected = int64(sc.Msgs) * int64(sc.Subs)
	res.MinPerSub = -1
	var lastUs int64
	perSub := make([][]int64, 0, sc.Subs)
	for _, s := range rep.Subs {
		res.Delivered += s.N
		res.Duplicates += s.Dups
		res.Reorders += s.Reorders
		res.PerSub = append(res.PerSub, s.N)
		if res.MinPerSub < 0 || s.N < res.MinPerSub {
			res.MinPerSub = s.N
		}
		res.MaxPerSub = max(res.MaxPerSub, s.N)
		lastUs = max(lastUs, s.LastUs)
		if s.Error != "" {
			res.SubscriberErrors++
		}
		ns := make([]int64, len(s.LatUs))
		for i, us := range s.LatUs {
			ns[i] = us * 1000
		}
		perSub = append(perSub, ns)
	}
	res.Drops = res.Expected - res.Delivered
	res.Complete = res.Drops == 0
	if lastUs > t0us {
		res.DurationSeconds = float64(lastUs-t0us) / 1e6
		res.DeliveriesPerSec = float64(res.Delivered) / res.DurationSeconds
	}
	setLatency(res, computeLatency(perSub))
	if pubErr != nil {
		return fmt.Errorf("publisher: %w", pubErr)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it (a child's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
