package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Outside systemd, ${CREDENTIALS_DIRECTORY} is laid out the way the unit's
// LoadCredential= lines would, so package scripts can check a config whose
// Gerrit key is a credential.
func TestCredentialsLaidOutLikeLoadCredential(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "key"), []byte("secret"), 0o600)
	single := filepath.Join(t.TempDir(), "token")
	os.WriteFile(single, []byte("tok"), 0o600)
	unit := []byte("[Service]\nLoadCredential=gerrit:" + src + "\nLoadCredential=api:" + single + "\n")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	os.Unsetenv("CREDENTIALS_DIRECTORY")
	cleanup := withCredentialsOf(unit)
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	for name, want := range map[string]string{"gerrit_key": "secret", "api": "tok"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	cleanup()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("temporary credentials directory left behind")
	}
	// Under systemd the variable is set and left alone.
	t.Setenv("CREDENTIALS_DIRECTORY", src)
	withCredentialsOf(unit)()
	if os.Getenv("CREDENTIALS_DIRECTORY") != src {
		t.Fatal("CREDENTIALS_DIRECTORY set by systemd was changed")
	}
}

func TestCheckCommandNamesFileLineKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "firehose.toml")
	os.WriteFile(cfg, []byte("[broker]\nconnect_timeout = \"10\"\n"), 0o644)
	var out, errOut bytes.Buffer
	Stdout, Stderr = &out, &errOut
	defer func() { Stdout, Stderr = os.Stdout, os.Stderr }()
	if code := Main([]string{"firehosectl", "check", "--config", cfg}); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if want := cfg + ":2: broker.connect_timeout:"; !strings.Contains(errOut.String(), want) {
		t.Fatalf("check printed %q, want it to contain %q", errOut.String(), want)
	}
	os.WriteFile(cfg, []byte("[broker]\nconnect_timeout = \"10s\"\n"), 0o644)
	if code := Main([]string{"firehosectl", "check", "--config", cfg}); code != 0 {
		t.Fatalf("a good config: exit %d: %s", code, errOut.String())
	}
}
