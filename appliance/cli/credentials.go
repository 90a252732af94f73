package cli

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"

	"github.com/firehose/firehose/appliance/install"
)

// withUnitCredentials lets commands run outside the service (check, firewall
// apply from package scripts) read a config that names secrets as
// ${CREDENTIALS_DIRECTORY}/...: when systemd has not set the variable, it
// lays out what the unit's LoadCredential= lines would, as links in a
// temporary directory, from the unit file this binary ships. The caller's own
// permissions still apply to the files behind the links.
func withUnitCredentials() (cleanup func()) {
	return withCredentialsOf(install.Units()[install.Service])
}

func withCredentialsOf(unit []byte) (cleanup func()) {
	if os.Getenv("CREDENTIALS_DIRECTORY") != "" {
		return func() {}
	}
	dir, err := os.MkdirTemp("", "firehose-credentials-")
	if err != nil {
		return func() {}
	}
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		spec, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "LoadCredential=")
		if !ok {
			continue
		}
		name, src, ok := strings.Cut(spec, ":")
		if !ok {
			continue
		}
		if entries, err := os.ReadDir(src); err == nil {
			// A directory source loads each file in it as NAME_FILE.
			for _, e := range entries {
				_ = os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dir, name+"_"+e.Name()))
			}
		} else {
			_ = os.Symlink(src, filepath.Join(dir, name))
		}
	}
	os.Setenv("CREDENTIALS_DIRECTORY", dir)
	return func() {
		os.Unsetenv("CREDENTIALS_DIRECTORY")
		os.RemoveAll(dir)
	}
}
