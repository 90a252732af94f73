package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// The CLI reaches the daemon only through the control API: it must not link
// the broker (or the daemon's parts) into the commands that operate it, apart
// from `serve`, which is the daemon. This checks the package's own imports.
func TestCLIDoesNotImportTheBroker(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range strings.Fields(string(out)) {
		for _, banned := range []string{"/appliance/broker", "/appliance/gerrit", "/appliance/listen", "github.com/mochi-mqtt/"} {
			if strings.HasSuffix(imp, banned) || strings.HasPrefix(imp, banned) {
				t.Errorf("appliance/cli imports %s; talk to the daemon through appliance/control", imp)
			}
		}
	}
}
