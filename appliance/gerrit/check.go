package gerrit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/config"
)

// Check reads every [[gerrit]] credential file the way a connection will:
// the private key must parse without a passphrase, known_hosts must parse
// and hold a key for the server, the events-log password file must not be
// empty. Errors name the file, line and key of the config.
func Check(c *config.Config) error {
	var errs []error
	for i, g := range c.Gerrit {
		at := func(key string) config.Key { return config.Key{"gerrit", i, key} }
		if _, err := loadSigner(g.KeyFile); err != nil {
			errs = append(errs, c.ErrorAt(at("key_file"), "%v", err))
		}
		addr := net.JoinHostPort(g.Host, strconv.Itoa(g.Port))
		if _, algos, err := hostKeys(g.KnownHosts, addr); err != nil {
			errs = append(errs, c.ErrorAt(at("known_hosts"), "%v", err))
		} else if len(algos) == 0 {
			errs = append(errs, c.ErrorAt(at("known_hosts"), "%s has no key for %s (get one with: ssh-keyscan -p %d %s)",
				g.KnownHosts, knownhosts.Normalize(addr), g.Port, g.Host))
		}
		if g.EventsLogURL != "" {
			if _, err := readPassword(g.EventsLogPasswordFile); err != nil {
				errs = append(errs, c.ErrorAt(at("events_log_password_file"), "%v", err))
			}
		}
	}
	return errors.Join(errs...)
}

// loadSigner reads an unencrypted OpenSSH or PEM private key. It is read at
// every connection, so a rotated key is picked up without a reload.
func loadSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("%s is protected by a passphrase; firehose runs unattended and needs a key without one", path)
	case err != nil && strings.Contains(err.Error(), "no key found"):
		if _, _, _, _, perr := ssh.ParseAuthorizedKey(b); perr == nil {
			return nil, fmt.Errorf("%s holds a public key; key_file needs the private key", path)
		}
		return nil, fmt.Errorf("%s holds no SSH private key", path)
	case err != nil:
		return nil, fmt.Errorf("%s is not a usable SSH private key: %v", path, err)
	}
	return s, nil
}

// probeKey is a key no known_hosts file holds: asking knownhosts about it
// lists the keys that are known for a host.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		panic(err)
	}
	return k
}()

// hostKeys parses a known_hosts file and returns its callback and the host
// key algorithms it knows for addr. Offering only those makes the server
// present a key we can verify: by default a server with both RSA and
// Ed25519 keys may present the one the file does not list, and the
// connection would fail as a key mismatch.
func hostKeys(path, addr string) (ssh.HostKeyCallback, []string, error) {
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, nil, err
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(strings.Trim(hostOf(addr), "[]")); ip != nil {
		remote.IP = ip
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, remote, probeKey); !errors.As(err, &ke) {
		return cb, nil, nil
	}
	var algos []string
	have := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !have[a] {
				have[a] = true
				algos = append(algos, a)
			}
		}
	}
	return cb, algos, nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// HostKeyError says which key a server offered that known_hosts does not
// vouch for, so the operator can compare fingerprints before trusting it.
type HostKeyError struct {
	Host        string // as written in known_hosts: [host]:port
	KnownHosts  string
	Type        string // key type offered, e.g. ssh-ed25519
	Fingerprint string // SHA256:...
	Mismatch    bool   // known_hosts has other keys for the host
}

func (e *HostKeyError) Error() string {
	if e.Mismatch {
		return fmt.Sprintf("host key for %s does not match %s: the server offered %s %s (possible impersonation, or the server's key changed)",
			e.Host, e.KnownHosts, e.Type, e.Fingerprint)
	}
	return fmt.Sprintf("host key for %s is not in %s: the server offered %s %s",
		e.Host, e.KnownHosts, e.Type, e.Fingerprint)
}

func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return pw, nil
}
