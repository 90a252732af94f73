package install

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recorder stands in for the host: it records commands instead of running them.
type recorder struct{ cmds []string }

func (r *recorder) run(name string, args ...string) error {
	r.cmds = append(r.cmds, strings.Join(append([]string{name}, args...), " "))
	return nil
}

func testOptions(t *testing.T) (Options, *recorder) {
	t.Helper()
	r := &recorder{}
	return Options{
		Root:   t.TempDir(),
		Config: []byte("# sample\n"),
		Run:    r.run,
		Stdout: &bytes.Buffer{},
	}, r
}

func TestUnitsShipEverySocket(t *testing.T) {
	units := Units()
	svc, ok := units[Service]
	if !ok {
		t.Fatalf("no %s among %v", Service, units)
	}
	for _, s := range Sockets {
		text, ok := units[s]
		if !ok {
			t.Errorf("missing %s", s)
			continue
		}
		// The daemon matches sockets by name, never by position.
		name := strings.TrimSuffix(strings.TrimPrefix(s, "firehose-"), ".socket")
		if !bytes.Contains(text, []byte("\nFileDescriptorName="+name+"\n")) {
			t.Errorf("%s: no FileDescriptorName=%s", s, name)
		}
		if !bytes.Contains(svc, []byte(s)) {
			t.Errorf("%s is not ordered after %s", Service, s)
		}
	}
	// Requiring the TLS sockets would start them, and hold their ports, with
	// TLS off.
	if !bytes.Contains(svc, []byte("\nRequires=firehose-mqtt.socket firehose-ws.socket\n")) {
		t.Errorf("%s does not require exactly the plain sockets:\n%s", Service, svc)
	}
	if len(units) != len(Sockets)+1 {
		t.Errorf("unexpected unit files: %d", len(units))
	}
	if !bytes.Contains(Sysusers(), []byte("u firehose ")) {
		t.Errorf("sysusers entry does not create firehose: %q", Sysusers())
	}
}

func TestInstall(t *testing.T) {
	o, r := testOptions(t)
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	svc, err := os.ReadFile(filepath.Join(o.Root, "/etc/systemd/system", Service))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svc, []byte("ExecStart=/usr/local/bin/firehosectl serve")) ||
		bytes.Contains(svc, []byte(PackagedBinary)) {
		t.Errorf("units still name the packaged binary:\n%s", svc)
	}
	if fi, err := os.Stat(filepath.Join(o.Root, "/usr/local/bin/firehosectl")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("binary not copied executable: %v %v", fi, err)
	}
	for dir, mode := range map[string]os.FileMode{"/etc/firehose": 0o755, credentialsDir: 0o700} {
		if fi, err := os.Stat(filepath.Join(o.Root, dir)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: want mode %o: %v %v", dir, mode, fi, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(o.Root, "/etc/firehose/firehose.toml")); err != nil || string(b) != "# sample\n" {
		t.Errorf("config: %q %v", b, err)
	}
	// The firewall goes up before the service so that its first moment on
	// the network is already filtered.
	want := []string{
		"systemctl daemon-reload",
		// Not the TLS sockets: with TLS off they would hold 8883 and 443
		// open with nothing answering (issue 15).
		"systemctl enable --now firehose-mqtt.socket firehose-ws.socket",
		"systemctl enable firehose.service",
		"/usr/local/bin/firehosectl firewall apply --config /etc/firehose/firehose.toml",
		"systemctl start firehose.service",
	}
	got := r.cmds[len(r.cmds)-len(want):]
	if !slices.Equal(got, want) {
		t.Errorf("commands:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(r.cmds[0], "firehose") {
		t.Errorf("account not created first: %q", r.cmds)
	}
}

func TestInstallKeepsConfig(t *testing.T) {
	o, _ := testOptions(t)
	p := filepath.Join(o.Root, "/etc/firehose/firehose.toml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.NoStart = true
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "# mine\n" {
		t.Errorf("existing config replaced: %q", b)
	}
}

func TestUninstall(t *testing.T) {
	for _, purge := range []bool{false, true} {
		name := map[bool]string{false: "remove", true: "purge"}[purge]
		t.Run(name, func(t *testing.T) {
			o, r := testOptions(t)
			o.NoStart = true
			if err := Install(o); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(o.Root, "/var/lib/firehose/acme"), 0o700); err != nil {
				t.Fatal(err)
			}
			r.cmds = nil
			o.NoStart, o.Purge = false, purge
			if err := Uninstall(o); err != nil {
				t.Fatal(err)
			}
			for _, u := range append([]string{Service}, Sockets...) {
				if _, err := os.Stat(filepath.Join(o.Root, "/etc/systemd/system", u)); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", u, err)
				}
			}
			if !slices.Contains(r.cmds, "/usr/local/bin/firehosectl firewall remove --config /etc/firehose/firehose.toml") {
				t.Errorf("firewall not removed: %q", r.cmds)
			}
			for _, d := range []string{"/etc/firehose", "/var/lib/firehose"} {
				_, err := os.Stat(filepath.Join(o.Root, d))
				if gone := os.IsNotExist(err); gone != purge {
					t.Errorf("%s: gone=%v, want %v", d, gone, purge)
				}
			}
		})
	}
}

func TestInstallWritesSampleConfig(t *testing.T) {
	o, _ := testOptions(t)
	o.Config, o.NoStart = nil, true
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(o.Root, "/etc/firehose/firehose.toml"))
	if err != nil || !bytes.Contains(b, []byte("[broker]")) {
		t.Errorf("sample config not written: %v\n%s", err, b)
	}
}

// With [tls] mode on in the config it keeps, install enables the TLS
// sockets too.
func TestInstallEnablesTLSSocketsWhenTLSIsOn(t *testing.T) {
	o, r := testOptions(t)
	o.Config = []byte("[tls]\nmode = \"files\"\n")
	if err := Install(o); err != nil {
		t.Fatal(err)
	}
	if want := "systemctl enable --now " + strings.Join(Sockets, " "); !slices.Contains(r.cmds, want) {
		t.Errorf("commands %q lack %q", r.cmds, want)
	}
}
