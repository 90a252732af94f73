package gerrit

import (
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	priv, _ := gerrittest.NewKey(t)
	_, host := gerrittest.NewKey(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	goodKey := gerrittest.WriteFile(t, dir, "key", pem.EncodeToMemory(block))
	locked, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	lockedKey := gerrittest.WriteFile(t, dir, "locked", pem.EncodeToMemory(locked))
	pubKey := gerrittest.WriteFile(t, dir, "key.pub", ssh.MarshalAuthorizedKey(host.PublicKey()))
	known := gerrittest.WriteFile(t, dir, "known_hosts", []byte(knownhosts.Line([]string{"[review.example]:29418"}, host.PublicKey())+"\n"))
	otherKnown := gerrittest.WriteFile(t, dir, "other_known_hosts", []byte(knownhosts.Line([]string{"elsewhere.example"}, host.PublicKey())+"\n"))
	pw := gerrittest.WriteFile(t, dir, "pw", []byte("secret\n"))
	emptyPw := gerrittest.WriteFile(t, dir, "empty", []byte("\n"))

	tests := []struct {
		name            string
		key, kh, pwFile string
		want            []string // substrings of the error; none = valid
	}{
		{"valid", goodKey, known, pw, nil},
		{"passphrase", lockedKey, known, pw, []string{"gerrit[0].key_file", "passphrase"}},
		{"public key", pubKey, known, pw, []string{"gerrit[0].key_file", "holds a public key"}},
		{"not a key", pw, known, pw, []string{"gerrit[0].key_file", "holds no SSH private key"}},
		{"host missing", goodKey, otherKnown, pw, []string{"gerrit[0].known_hosts", "no key for [review.example]:29418"}},
		{"bad known_hosts", goodKey, pw, pw, []string{"gerrit[0].known_hosts"}},
		{"empty password", goodKey, known, emptyPw, []string{"gerrit[0].events_log_password_file", "empty"}},
		{"several", lockedKey, otherKnown, emptyPw, []string{"key_file", "known_hosts", "events_log_password_file"}},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			src := fmt.Sprintf(`
[broker]
state_dir = %q

[[gerrit]]
name = "review"
host = "review.example"
user = "firehose"
key_file = %q
known_hosts = %q
events_log_url = "https://review.example/a/plugins/events-log/events/"
events_log_user = "firehose"
events_log_password_file = %q
`, dir, tt.key, tt.kh, tt.pwFile)
			c, err := config.Parse(dir+"/firehose.toml", []byte(src))
			if err != nil {
				t.Fatalf("config does not parse: %v", err)
			}
			err = Check(c)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "firehose.toml:") {
				t.Errorf("error %q does not name the config file", err)
			}
		})
	}
}
