package daemon_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/capture"
)

// subProc is a running `firehosectl sub`, its output line by line.
type subProc struct {
	t     *testing.T
	lines chan string
	done  chan error
	out   *capture.Buffer // stderr
}

func startSub(t *testing.T, args ...string) *subProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"sub"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &subProc{t: t, lines: make(chan string, 1000), done: make(chan error, 1), out: &capture.Buffer{}}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// expect reads the next n lines.
func (p *subProc) expect(n int) []string {
	p.t.Helper()
	var got []string
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("firehosectl sub ended after %q; stderr: %s", got, p.out.String())
			}
			got = append(got, l)
		case <-deadline:
			p.t.Fatalf("firehosectl sub printed %q, want %d lines; stderr: %s", got, n, p.out.String())
		}
	}
	return got
}

func (p *subProc) exited() error {
	p.t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("firehosectl sub did not exit; stderr: %s", p.out.String())
		return nil
	}
}

// `firehosectl sub --since` through the real daemon: it replays what was
// published before it started, then follows live messages, printing
// sequence numbers with -v; --since takes a sequence, a time or a duration.
func TestSubSince(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[journal]\nenabled = true\n"})
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	pub := func(topic, payload string) {
		t.Helper()
		if err := wait(c.Publish(topic, 1, false, payload)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	pub("zuul/a/1", `{"n":1}`)
	pub("zuul/b/1", `{"other":true}`)
	pub("zuul/a/2", "two")
	pub("zuul/a/3", `{"n":3}`)
	port := strconv.Itoa(portOf(t, d.addr["ws"]))
	common := []string{"-h", "127.0.0.1", "-p", port, "-t", "zuul/a/#"}

	// From the beginning: three from history, two live.
	p := startSub(t, append(common, "--since", "1", "-v", "-C", "5")...)
	hist := p.expect(3)
	pub("zuul/a/4", `{"n":4}`)
	pub("zuul/b/2", `{"other":true}`)
	pub("zuul/a/5", "five")
	all := append(hist, p.expect(2)...)
	if err := p.exited(); err != nil {
		t.Errorf("sub -C 5: %v; stderr: %s", err, p.out.String())
	}
	var seqs []uint64
	var rest []string
	for _, l := range all {
		seq, r, _ := strings.Cut(l, " ")
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			t.Fatalf("-v line %q does not start with a sequence number", l)
		}
		if len(seqs) > 0 && n <= seqs[len(seqs)-1] {
			t.Errorf("sequence %d after %d", n, seqs[len(seqs)-1])
		}
		seqs = append(seqs, n)
		rest = append(rest, r)
	}
	want := []string{`zuul/a/1 {"n":1}`, "zuul/a/2 two", `zuul/a/3 {"n":3}`, `zuul/a/4 {"n":4}`, "zuul/a/5 five"}
	if strings.Join(rest, "\n") != strings.Join(want, "\n") {
		t.Errorf("sub --since 1 -v printed\n%s\nwant\n%s", strings.Join(all, "\n"), strings.Join(want, "\n"))
	}
	if len(seqs) != 5 {
		return
	}

	// From a sequence in the middle, a time, a duration: the same messages
	// from where each points.
	for _, tc := range []struct {
		since string
		want  []string
	}{
		{strconv.FormatUint(seqs[2], 10), []string{`{"n":3}`, `{"n":4}`, "five"}},
		{start.Add(-time.Second).UTC().Format(time.RFC3339Nano), []string{`{"n":1}`, "two", `{"n":3}`}},
		{"1h", []string{`{"n":1}`, "two", `{"n":3}`}},
	} {
		t.Run("since="+tc.since, func(t *testing.T) {
			p := startSub(t, append(common, "--since", tc.since, "-C", fmt.Sprint(len(tc.want)))...)
			got := p.expect(len(tc.want))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("sub --since %s printed %q, want %q", tc.since, got, tc.want)
			}
			if err := p.exited(); err != nil {
				t.Errorf("exit: %v; stderr: %s", err, p.out.String())
			}
		})
	}

	// A bad filter is the server's to refuse, and sub says so.
	out, code := d.run("sub", "-h", "127.0.0.1", "-p", port, "-t", "zuul/#/x", "--since", "1")
	if code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("sub with a bad filter: exit %d: %s", code, out)
	}
}
