package daemon_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/capture"
)

// browser is Debian's headless Chromium driven by playwright-core through
// testdata/browser.cjs, a bridge that runs the commands a test sends.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     *json.Encoder
	out    *bufio.Scanner
	stderr *capture.Buffer
	id     int
}

// repoRoot is where `make deps` installs the npm test dependencies.
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// startBrowser launches Chromium with a new, empty profile. It skips when
// Chromium or Node.js is not installed (`make deps` installs both where it
// can), and fails when playwright-core is missing, since `make deps` puts
// it there.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (Debian package chromium; `make deps` installs it): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH: the browser test drives Chromium with playwright-core (install Node.js, then `make deps`)")
	}
	modules := filepath.Join(repoRoot(t), ".cache", "node", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: run `make deps`", modules)
	}
	profile := t.TempDir()
	cmd := exec.Command(node, "testdata/browser.cjs", profile)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "CHROMIUM="+chromium)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd, in: json.NewEncoder(stdin), out: bufio.NewScanner(stdout), stderr: &capture.Buffer{}}
	b.out.Buffer(nil, 16<<20)
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.in.Encode(map[string]any{"op": "close"})
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && b.stderr.String() != "" {
			t.Logf("browser stderr:\n%s", b.stderr.String())
		}
	})
	return b
}

// call runs one command in the browser. Waits inside the browser are bounded
// by timeout; the bridge answering at all is bounded by a little more.
func (b *browser) call(op string, args map[string]any, result any) error {
	b.t.Helper()
	b.id++
	cmd := map[string]any{"id": b.id, "op": op, "timeout": 60000}
	for k, v := range args {
		cmd[k] = v
	}
	if err := b.in.Encode(cmd); err != nil {
		b.t.Fatalf("browser %s: %v (stderr: %s)", op, err, b.stderr.String())
	}
	type reply struct {
		ID    int             `json:"id"`
		OK    bool            `json:"ok"`
		Value json.RawMessage `json:"value"`
		Error string          `json:"error"`
	}
	got := make(chan *reply, 1)
	id := b.id
	go func() {
		for b.out.Scan() {
			var r reply
			if json.Unmarshal(b.out.Bytes(), &r) == nil && r.ID == id {
				got <- &r
				return
			}
		}
		got <- nil
	}()
	select {
	case r := <-got:
		if r == nil {
			b.t.Fatalf("browser %s: the bridge ended: %s", op, b.stderr.String())
		}
		if !r.OK {
			return fmt.Errorf("browser %s: %s", op, r.Error)
		}
		if result != nil {
			if err := json.Unmarshal(r.Value, result); err != nil {
				b.t.Fatalf("browser %s: %v in %s", op, err, r.Value)
			}
		}
		return nil
	case <-time.After(3 * time.Minute):
		b.t.Fatalf("browser %s: no answer in 3 minutes (stderr: %s)", op, b.stderr.String())
		return nil
	}
}

// must is call, failing the test on an error.
func (b *browser) must(op string, args map[string]any, result any) {
	b.t.Helper()
	if err := b.call(op, args, result); err != nil {
		b.t.Fatal(err)
	}
}

// wait polls a JavaScript expression in the page until it is truthy.
func (b *browser) wait(what, expr string, result any) {
	b.t.Helper()
	if err := b.call("wait", map[string]any{"expr": expr}, result); err != nil {
		b.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// screenshot saves the page as a CI artifact: in $FIREHOSE_ARTIFACTS if set,
// else <repo>/artifacts/ (gitignored), and prints where.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	dir := os.Getenv("FIREHOSE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(b.t), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	b.must("screenshot", map[string]any{"path": path}, nil)
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		b.t.Fatalf("screenshot %s: %v", path, err)
	}
	b.t.Logf("screenshot: %s", path)
	fmt.Fprintf(os.Stderr, "%s: screenshot saved to %s\n", b.t.Name(), path)
	return path
}

// pageLog is what the page did beyond the test's commands.
type pageLog struct {
	Console  []string `json:"console"`
	Errors   []string `json:"errors"`
	Requests []string `json:"requests"`
}

// checkClean fails the test if the page logged an error (a CSP violation
// is one) or requested anything from another origin than base.
func (b *browser) checkClean(base string) {
	b.t.Helper()
	var l pageLog
	b.must("log", nil, &l)
	for _, e := range l.Errors {
		b.t.Errorf("page error: %s", e)
	}
	for _, c := range l.Console {
		if strings.HasPrefix(c, "error:") {
			b.t.Errorf("page console: %s", c)
		}
	}
	for _, u := range l.Requests {
		if !strings.HasPrefix(u, base+"/") {
			b.t.Errorf("the page requested %s, outside %s", u, base)
		}
	}
	if len(l.Requests) == 0 {
		b.t.Error("no requests recorded")
	}
}
