package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.err from the current output")

// Each testdata/NAME.toml is parsed; NAME.err holds the expected errors, one
// per line, or is absent for a file that must parse.
func TestFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := Parse(filepath.Base(f), src)
			errFile := strings.TrimSuffix(f, ".toml") + ".err"
			got := ""
			if perr != nil {
				got = perr.Error() + "\n"
			}
			if *update && got != "" {
				os.WriteFile(errFile, []byte(got), 0o644)
			}
			want, rerr := os.ReadFile(errFile)
			if rerr != nil {
				if perr != nil {
					t.Fatalf("unexpected error:\n%s", got)
				}
				return
			}
			if got != string(want) {
				t.Fatalf("errors:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestDefaultsAndValues(t *testing.T) {
	c, err := Parse("ok-full.toml", mustRead(t, "testdata/ok-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.MQTT != "0.0.0.0:1883" || c.Broker.MQTTS != ":8883" || c.Broker.ConnectTimeout.D() != 2*time.Second {
		t.Errorf("broker = %+v", c.Broker)
	}
	if got := c.Firewall.NewConnectionsPerSource; got != (Rate{600, time.Minute}) || got.String() != "600/minute" {
		t.Errorf("rate = %+v %q", got, got)
	}
	if c.Metrics != (Metrics{Enabled: true, Listen: "[::1]:9900"}) {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	if len(c.Publishers) != 1 || len(c.Publishers[0].Topics) != 2 {
		t.Errorf("publishers = %+v", c.Publishers)
	}
	if c.Page != (Page{Title: "OpenDev firehose", Hostname: "firehose.opendev.org"}) {
		t.Errorf("page = %+v", c.Page)
	}
	g, err := Parse("g.toml", []byte("[[gerrit]]\nname='a'\nhost='h'\nuser='u'\nkey_file='testdata/ok-full.toml'\nknown_hosts='testdata/ok-full.toml'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if gg := g.Gerrit[0]; gg.Port != 29418 || gg.Topic != "gerrit" || gg.Keepalive.D() != 15*time.Second {
		t.Errorf("gerrit defaults = %+v", gg)
	}
	empty, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Broker.MaxClients != 50000 || empty.TLS.Mode != TLSOff || empty.Firewall.Enabled ||
		empty.Metrics.Enabled || empty.Metrics.Listen != "127.0.0.1:9883" || empty.Page.Title != "firehose" || empty.Page.Hostname != "" {
		t.Errorf("defaults = %+v", empty)
	}
}

func TestCredentialsDirectoryExpanded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gerrit_key"), []byte("k"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	c, err := Parse("c.toml", []byte("[[gerrit]]\nname='a'\nhost='h'\nuser='u'\nkey_file='${CREDENTIALS_DIRECTORY}/gerrit_key'\nknown_hosts='testdata/ok-full.toml'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "gerrit_key"); c.Gerrit[0].KeyFile != want {
		t.Fatalf("key_file = %q, want %q", c.Gerrit[0].KeyFile, want)
	}
}

func TestErrorAtLocatesElements(t *testing.T) {
	src := "[[gerrit]]\nname = 'a'\n\n[[gerrit]]\nname = 'b'\nkey_file = 'x'\n"
	c := &Config{Path: "f.toml", src: []byte(src)}
	for _, tc := range []struct {
		key  Key
		want string
	}{
		{Key{"gerrit", 1, "key_file"}, "f.toml:6: gerrit[1].key_file: bad"},
		{Key{"gerrit", 0, "key_file"}, "f.toml:1: gerrit[0].key_file: bad"},
		{Key{"gerrit", 1}, "f.toml:4: gerrit[1]: bad"},
		{Key{"tls", "mode"}, "f.toml: tls.mode: bad"},
	} {
		if got := c.ErrorAt(tc.key, "bad").Error(); got != tc.want {
			t.Errorf("ErrorAt(%v) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParse: no input may panic, and every error names the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("[[publisher]]\n[[publisher]]\nusername=1\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 4096 {
			return // locating errors is quadratic in lines by design; configs are small
		}
		_, err := Parse("fuzz.toml", src)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.toml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
