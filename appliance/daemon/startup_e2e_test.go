package daemon_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveOnce runs firehosectl serve with cfg until it exits, handing over
// files the systemd way when given (names in LISTEN_FDNAMES), and returns
// its exit code and everything it printed. A daemon that starts instead of
// failing is stopped and reported.
type serveRun struct {
	cfg   string
	files []*os.File
	names []string
	cred  *syscall.Credential
	dir   string // where the config goes; default a fresh temp dir
}

func serveOnce(t *testing.T, r serveRun) (int, string) {
	t.Helper()
	dir := r.dir
	if dir == "" {
		dir = t.TempDir()
	}
	cfgPath := filepath.Join(dir, "firehose.toml")
	if err := os.WriteFile(cfgPath, []byte(r.cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary, "serve", "--config", cfgPath)
	cmd.Env = os.Environ()
	if len(r.files) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(r.files)), "LISTEN_FDNAMES="+strings.Join(r.names, ":"))
		cmd.ExtraFiles = r.files
	}
	if r.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the daemon did not exit within 60s; it should have refused to start. Output:\n%s", out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// expectOneLine checks a start-up failure: a non-zero exit and exactly one
// line of output, the error, containing every one of want.
func expectOneLine(t *testing.T, code int, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code == 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "firehosectl: ") {
		t.Fatalf("exit %d, %d lines of output:\n%s\nwant a non-zero exit and one line starting with \"firehosectl: \"", code, len(lines), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the error %q does not say %q", lines[0], w)
		}
	}
}

// minimalConfig binds nothing of its own unless told; the state and control
// socket live in dir.
func minimalConfig(dir, broker string) string {
	return fmt.Sprintf("[broker]\nmqtt = \"\"\nwebsocket = \"\"\n%s\n[control]\nsocket = %q\n", broker, filepath.Join(dir, "control.sock"))
}

// Issue 10: a listener address already in use made serve panic (a nil
// pointer in stopParts, from start's cleanup).
func TestStartFailsAddressInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dir := t.TempDir()
	cfg := minimalConfig(dir, fmt.Sprintf("state_dir = %q\n", filepath.Join(dir, "state")))
	cfg = strings.Replace(cfg, `mqtt = ""`, fmt.Sprintf("mqtt = %q", held.Addr().String()), 1)
	code, out := serveOnce(t, serveRun{cfg: cfg, dir: dir})
	expectOneLine(t, code, out, "listener mqtt", held.Addr().String(), "address already in use")
}

func TestStartFailsUnusableStateDir(t *testing.T) {
	t.Run("a_file", func(t *testing.T) {
		dir := t.TempDir()
		state := filepath.Join(dir, "state")
		os.WriteFile(state, []byte("not a directory\n"), 0o644)
		code, out := serveOnce(t, serveRun{cfg: minimalConfig(dir, fmt.Sprintf("state_dir = %q", state)), dir: dir})
		expectOneLine(t, code, out, "firehose.toml:4: broker.state_dir:", state, "not a directory")
	})
	t.Run("not_the_daemons", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to run the daemon as another user")
		}
		// The daemon runs as nobody; the state directory is root's, 0700.
		dir := worldReadableDir(t)
		state := filepath.Join(dir, "state")
		os.Mkdir(state, 0o700)
		code, out := serveOnce(t, serveRun{cfg: minimalConfig(dir, fmt.Sprintf("state_dir = %q", state)), dir: dir,
			cred: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}})
		expectOneLine(t, code, out, "broker.state_dir:", state, "permission denied")
	})
}

// Sockets from systemd that cannot be listeners were skipped silently by
// go-systemd: the daemon then served nothing on them and said nothing.
func TestStartFailsBadSocketFromSystemd(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(t *testing.T) *os.File
		want string
	}{
		{"regular_file", func(t *testing.T) *os.File {
			f, err := os.CreateTemp(t.TempDir(), "fd")
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "not a socket"},
		{"udp", func(t *testing.T) *os.File {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f, err := c.(*net.UDPConn).File()
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "not a stream socket"},
		{"unix", func(t *testing.T) *os.File {
			l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			f, err := l.(*net.UnixListener).File()
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "not a TCP socket"},
		{"a_connection", func(t *testing.T) *os.File {
			// What a socket unit with Accept=yes hands over.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f, err := c.(*net.TCPConn).File()
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, "not listening"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := tc.file(t)
			defer f.Close()
			code, out := serveOnce(t, serveRun{
				cfg:   minimalConfig(dir, fmt.Sprintf("state_dir = %q", filepath.Join(dir, "state"))),
				dir:   dir,
				files: []*os.File{f}, names: []string{"mqtt"},
			})
			expectOneLine(t, code, out, `socket "mqtt" from systemd (fd 3)`, tc.want)
		})
	}
}

// worldReadableDir is a temporary directory other users can enter (t.TempDir
// is private to root), for a daemon or client run as nobody.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "firehose-ops-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The binary too, in its own private directory.
	if err := os.Chmod(filepath.Dir(binary), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
