package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The commands that look for a running daemon read only [control] socket,
// and get past errors elsewhere in the file (issue 15).
func TestControlSocketFromBrokenFiles(t *testing.T) {
	def := Default().Control.Socket
	for _, tc := range []struct{ name, src, want string }{
		{"valid", "[control]\nsocket = \"/run/x.sock\"\n", "/run/x.sock"},
		{"absent", "[broker]\nmqtt = \":1883\"\n", def},
		{"bad_value_elsewhere", "[broker]\nmax_clients = \"many\"\n[control]\nsocket = \"/run/x.sock\"\n", "/run/x.sock"},
		{"unknown_key_elsewhere", "[brokr]\n[control]\nsocket = '/run/x.sock'\n", "/run/x.sock"},
		{"syntax_error_before", "[broker\nmax_clients = = 1\n[control]\n  socket = \"/run/x.sock\" # here\n", "/run/x.sock"},
		{"syntax_error_dotted", "x = [\ncontrol.socket = \"/run/y.sock\"\n", "/run/y.sock"},
		{"other_table", "[broker\n[gerrit]\nsocket = \"/run/no.sock\"\n", def},
		{"not_a_string", "[control]\nsocket = 3\n", def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := controlSocket([]byte(tc.src)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Issue 10: a FIFO at the config path made a reload block for ever.
func TestLoadRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "firehose.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir, "/dev/zero"} {
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Load(%s): %v, want not a regular file", p, err)
		}
	}
	// A file the config names, likewise.
	src := "[tls]\nmode = \"files\"\ncert_file = \"" + fifo + "\"\nkey_file = \"/dev/null\"\n"
	_, err := Parse("f.toml", []byte(src))
	for _, want := range []string{"f.toml:3: tls.cert_file: cannot read the PEM certificate chain: " + fifo + ": not a regular file (a named pipe)", "tls.key_file", "/dev/null: not a regular file (a device)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a FIFO and a device as TLS files: %v, want %q", err, want)
		}
	}
	big := filepath.Join(dir, "big.toml")
	os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644)
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an oversized file: %v", err)
	}
}

// FuzzControlSocket: no input panics, and a file that parses gives the
// socket Parse does.
func FuzzControlSocket(f *testing.F) {
	f.Add([]byte("[control]\nsocket = \"/run/x.sock\"\n"))
	f.Add([]byte("[broker\n[control]\nsocket = '/a'\n"))
	f.Add([]byte("control.socket = \"/b\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 4096 {
			return
		}
		got := controlSocket(src)
		if c, err := Parse("fuzz.toml", src); err == nil && got != c.Control.Socket {
			t.Fatalf("controlSocket %q, Parse %q", got, c.Control.Socket)
		}
	})
}
