// Package install puts firehose on a systemd host the way the deb and rpm
// packages do, for hosts where only the binary was copied in
// (`firehosectl install`). It owns the systemd units and the sysusers.d entry:
// they are embedded here and nfpm.yaml ships the same files, so a package and
// an install by hand cannot drift apart. It never overwrites an existing
// config, and it removes configuration and state only when asked to purge.
package install

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/packaging"
)

//go:embed systemd/*.service systemd/*.socket
var unitFS embed.FS

//go:embed sysusers/firehose.conf
var sysusersConf []byte

// PackagedBinary is the path the unit files name; Install rewrites it to
// Options.BinPath.
const PackagedBinary = "/usr/bin/firehosectl"

// Service is the daemon's unit; Sockets are its listeners, one per
// FileDescriptorName.
const Service = "firehose.service"

// PlainSockets are enabled and started on every install; TLSSockets only
// where [tls] mode is on, so that 8883 and 443 are not held open with
// nothing to answer there. Sockets lists them all.
var (
	PlainSockets = []string{"firehose-mqtt.socket", "firehose-ws.socket"}
	TLSSockets   = []string{"firehose-mqtts.socket", "firehose-wss.socket"}
	Sockets      = slices.Concat(PlainSockets, TLSSockets)
)

// Units returns the embedded unit files by name, as the packages ship them.
func Units() map[string][]byte {
	out := map[string][]byte{}
	entries, err := fs.ReadDir(unitFS, "systemd")
	if err != nil {
		panic(err) // embedded at build time; cannot fail
	}
	for _, e := range entries {
		b, err := unitFS.ReadFile(path.Join("systemd", e.Name()))
		if err != nil {
			panic(err)
		}
		out[e.Name()] = b
	}
	return out
}

// Sysusers returns the sysusers.d entry that creates the firehose account.
func Sysusers() []byte { return bytes.Clone(sysusersConf) }

// Options says where things go. The zero value installs into the places an
// administrator owns (/etc/systemd/system, /usr/local/bin), leaving /usr to
// the package manager.
type Options struct {
	// Root prefixes every path written or removed; tests point it at a
	// temporary directory. Commands still run as given.
	Root string
	// BinPath is where the binary is copied and what the units run.
	BinPath string
	// UnitDir receives the unit files.
	UnitDir string
	// SysusersDir receives firehose.conf for systemd-sysusers.
	SysusersDir string
	// ConfigPath is the daemon's config; written from Config only when absent.
	ConfigPath string
	// Config is written to ConfigPath when that is absent; nil means the
	// packaged sample (packaging/firehose.toml).
	Config []byte
	// StateDir is removed by a purge; systemd creates it (StateDirectory=).
	StateDir string
	// NoStart writes files and creates the account but starts nothing.
	NoStart bool
	// Purge makes Uninstall remove the configuration and state too.
	Purge bool
	// Run runs a command; nil runs it with output to Stdout.
	Run func(name string, args ...string) error
	// Stdout receives progress and command output; nil means os.Stdout.
	Stdout io.Writer
}

func (o *Options) setDefaults() {
	if o.BinPath == "" {
		o.BinPath = "/usr/local/bin/firehosectl"
	}
	if o.UnitDir == "" {
		o.UnitDir = "/etc/systemd/system"
	}
	if o.SysusersDir == "" {
		o.SysusersDir = "/etc/sysusers.d"
	}
	if o.ConfigPath == "" {
		o.ConfigPath = "/etc/firehose/firehose.toml"
	}
	if o.StateDir == "" {
		o.StateDir = "/var/lib/firehose"
	}
	if o.Config == nil {
		o.Config = packaging.SampleConfig
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Run == nil {
		o.Run = func(name string, args ...string) error {
			cmd := exec.Command(name, args...)
			cmd.Stdout, cmd.Stderr = o.Stdout, o.Stdout
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
			}
			return nil
		}
	}
}

// at maps a host path under Root.
func (o *Options) at(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Stdout, format+"\n", args...)
}

// credentialsDir must exist: LoadCredential= with a missing source fails the
// service, while an empty directory is fine (checked on systemd 252).
const credentialsDir = "/etc/firehose/credentials/gerrit"

// Install copies the running binary to BinPath, creates the firehose account,
// writes the units and (if absent) the config, then enables and starts the
// sockets, applies the firewall and starts the service, in the order the
// package scripts use.
func Install(opts Options) error {
	o := &opts
	o.setDefaults()
	if o.Root == "" && os.Geteuid() != 0 {
		return errors.New("install must run as root (try: sudo firehosectl install)")
	}
	if err := o.copySelf(); err != nil {
		return err
	}
	if err := o.createAccount(); err != nil {
		return err
	}
	// /etc/firehose first: MkdirAll would give it the credentials' 0700, and
	// the daemon (user firehose) must reach its config inside.
	for _, d := range []string{filepath.Dir(o.ConfigPath), filepath.Dir(credentialsDir)} {
		if err := os.MkdirAll(o.at(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.at(credentialsDir), 0o700); err != nil {
		return err
	}
	// MkdirAll leaves an existing directory's mode alone; a key lives here.
	if err := os.Chmod(o.at(credentialsDir), 0o700); err != nil {
		return err
	}
	for name, text := range Units() {
		text = bytes.ReplaceAll(text, []byte(PackagedBinary), []byte(o.BinPath))
		if err := writeFile(o.at(filepath.Join(o.UnitDir, name)), text, 0o644); err != nil {
			return err
		}
		o.logf("wrote %s", filepath.Join(o.UnitDir, name))
	}
	if err := o.writeConfig(); err != nil {
		return err
	}
	if o.NoStart {
		return nil
	}
	sockets := PlainSockets
	if tlsOn(o.at(o.ConfigPath)) {
		sockets = Sockets
	}
	steps := [][]string{
		{"systemctl", "daemon-reload"},
		append([]string{"systemctl", "enable", "--now"}, sockets...),
		{"systemctl", "enable", Service},
		{o.BinPath, "firewall", "apply", "--config", o.ConfigPath},
		{"systemctl", "start", Service},
	}
	for _, s := range steps {
		if err := o.Run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	o.logf("firehose is installed; check it with: %s status", o.BinPath)
	return nil
}

// Uninstall stops and disables the units, removes the firewall table and the
// files Install wrote. The binary and the account stay: the binary is what is
// running, and a removed account's uid could be reused by another service
// that would then own leftover files. With Purge it also removes the
// configuration directory and the state directory.
func Uninstall(opts Options) error {
	o := &opts
	o.setDefaults()
	if o.Root == "" && os.Geteuid() != 0 {
		return errors.New("uninstall must run as root (try: sudo firehosectl uninstall)")
	}
	var errs []error
	units := append([]string{Service}, Sockets...)
	// Failures here are reported but do not stop the cleanup: a half-removed
	// installation is worse than one with a unit that was already stopped.
	try := func(name string, args ...string) {
		if err := o.Run(name, args...); err != nil {
			errs = append(errs, err)
		}
	}
	try("systemctl", append([]string{"disable", "--now"}, units...)...)
	try(o.BinPath, "firewall", "remove", "--config", o.ConfigPath)
	for _, u := range units {
		p := filepath.Join(o.UnitDir, u)
		if err := os.Remove(o.at(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(o.at(filepath.Join(o.SysusersDir, "firehose.conf"))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	try("systemctl", "daemon-reload")
	if o.Purge {
		for _, d := range []string{filepath.Dir(o.ConfigPath), o.StateDir} {
			if err := os.RemoveAll(o.at(d)); err != nil {
				errs = append(errs, err)
			}
			o.logf("removed %s", d)
		}
	}
	return errors.Join(errs...)
}

// copySelf puts the running binary at BinPath unless it already runs from there.
func (o *Options) copySelf() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dst := o.at(o.BinPath)
	if a, err := filepath.EvalSymlinks(self); err == nil {
		if b, err := filepath.EvalSymlinks(dst); err == nil && a == b {
			return nil
		}
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// Write beside and rename, so a running copy of the old binary is not
	// overwritten in place ("text file busy") and a crash leaves no half file.
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".firehosectl-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	o.logf("copied %s to %s", self, o.BinPath)
	return nil
}

// createAccount uses systemd-sysusers with the embedded entry, as the
// packages do; hosts without it get useradd.
func (o *Options) createAccount() error {
	conf := filepath.Join(o.SysusersDir, "firehose.conf")
	if err := writeFile(o.at(conf), sysusersConf, 0o644); err != nil {
		return err
	}
	if _, err := exec.LookPath("systemd-sysusers"); err == nil {
		return o.Run("systemd-sysusers", conf)
	}
	if _, err := user.Lookup("firehose"); err == nil {
		return nil
	}
	return o.Run("useradd", "--system", "--user-group", "--home-dir", "/var/lib/firehose",
		"--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "firehose MQTT event bus", "firehose")
}

// tlsOn reads only [tls] mode of the config at p (which may name
// credentials only the service can read, so it is not validated here).
func tlsOn(p string) bool {
	var c struct {
		TLS struct {
			Mode string `toml:"mode"`
		} `toml:"tls"`
	}
	src, err := config.ReadRegular(p)
	if err != nil {
		return false
	}
	if _, err := toml.Decode(string(src), &c); err != nil {
		return false
	}
	return c.TLS.Mode != "" && c.TLS.Mode != config.TLSOff
}

// writeConfig writes the default config only when there is none; the daemon
// (as user firehose) must be able to read it, other users need not.
func (o *Options) writeConfig() error {
	p := o.at(o.ConfigPath)
	if _, err := os.Stat(p); err == nil {
		o.logf("kept existing %s", o.ConfigPath)
		return nil
	}
	if err := writeFile(p, o.Config, 0o640); err != nil {
		return err
	}
	if o.Root == "" {
		if g, err := user.LookupGroup("firehose"); err == nil {
			gid, err := strconv.Atoi(g.Gid)
			if err != nil {
				return err
			}
			if err := os.Chown(p, 0, gid); err != nil {
				return err
			}
		}
	}
	o.logf("wrote %s", o.ConfigPath)
	return nil
}

// writeFile replaces a file atomically.
func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
