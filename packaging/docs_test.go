package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// freshRootPATH is PATH in a fresh root login shell on Debian 12 (from
// /etc/profile); Go's /usr/local/go/bin is not on it, and sudo is not
// installed.
const freshRootPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// binariesOf names what a Debian package the README installs provides.
var binariesOf = map[string][]string{
	"make":              {"make"},
	"mosquitto-clients": {"mosquitto_sub", "mosquitto_pub"},
}

// Issue 15: the README's commands must paste into a fresh Debian root shell:
// no sudo, and every program either on that shell's PATH, on a PATH the
// block exports, or installed by the block itself.
func TestReadmeQuickStartPastesIntoAFreshRootShell(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	intro, _, _ := strings.Cut(string(readme), "\n## ")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(intro, -1)
	if len(blocks) < 2 {
		t.Fatalf("want the quick start's two sh blocks before the first section, found %d", len(blocks))
	}
	for i, b := range blocks {
		path := freshRootPATH
		installed := map[string]bool{}
		for _, cmd := range shellCommands(b[1]) {
			w := strings.Fields(cmd)
			switch {
			case w[0] == "export":
				for _, a := range w[1:] {
					if v, ok := strings.CutPrefix(a, "PATH="); ok {
						path = os.Expand(v, func(k string) string {
							if k == "PATH" {
								return path
							}
							return "$" + k
						})
					}
				}
				continue
			case w[0] == "command" || w[0] == "cd":
				continue // builtins
			case w[0] == "sudo":
				t.Errorf("block %d: %q: a fresh Debian root shell has no sudo", i+1, cmd)
				continue
			case w[0] == "apt-get" && len(w) > 1 && w[1] == "install":
				for _, pkg := range w[2:] {
					for _, bin := range binariesOf[pkg] {
						installed[bin] = true
					}
				}
			}
			if !installed[w[0]] && !onPath(w[0], path) {
				t.Errorf("block %d: %q: %s is not on PATH in a fresh root shell (%s)", i+1, cmd, w[0], path)
			}
		}
	}
}

// shellCommands splits a block into simple commands: comments dropped,
// split at ; && || | & outside quotes, braces and leading assignments
// skipped.
func shellCommands(block string) []string {
	var out []string
	for _, line := range strings.Split(block, "\n") {
		var cur strings.Builder
		var quote rune
		flush := func() {
			f := strings.Fields(cur.String())
			for len(f) > 0 && (f[0] == "{" || f[0] == "}" || (strings.Contains(f[0], "=") && f[0] != "export")) {
				f = f[1:]
			}
			if len(f) > 0 && f[len(f)-1] == "}" {
				f = f[:len(f)-1]
			}
			if len(f) > 0 {
				out = append(out, strings.Join(f, " "))
			}
			cur.Reset()
		}
		rs := []rune(line)
		for j := 0; j < len(rs); j++ {
			r := rs[j]
			switch {
			case quote != 0:
				if r == quote {
					quote = 0
				}
			case r == '\'' || r == '"':
				quote = r
			case r == '#' && (j == 0 || rs[j-1] == ' ' || rs[j-1] == '\t'):
				j = len(rs)
				continue
			case r == ';' || r == '&' || r == '|':
				flush()
				continue
			}
			cur.WriteRune(r)
		}
		flush()
	}
	return out
}

func onPath(name, path string) bool {
	for _, dir := range filepath.SplitList(path) {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}

func TestShellCommands(t *testing.T) {
	got := shellCommands("export A=1 # x\nmosquitto_sub -t '#' -v &\ncommand -v m || { apt-get update && apt-get install -y m; }\nX=1 go run . ; sudo env make")
	want := []string{"export A=1", "mosquitto_sub -t '#' -v", "command -v m", "apt-get update", "apt-get install -y m", "go run .", "sudo env make"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// Issue 15: no licence anywhere; the packages said none and rpmlint warned.
func TestLicenceIsApache2Everywhere(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"../LICENSE", "Apache License\n                           Version 2.0, January 2004"},
		{"../nfpm.yaml", "\nlicense: Apache-2.0\n"},
		{"deb/copyright", "\nLicense: Apache-2.0\n"},
		{"deb/copyright", "/usr/share/common-licenses/Apache-2.0"},
		{"../README.md", "Apache License, Version 2.0"},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(b), c.want) {
			t.Errorf("%s does not say %q", c.file, c.want)
		}
	}
}
