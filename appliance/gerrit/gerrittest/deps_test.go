package gerrittest

import (
	"os/exec"
	"strings"
	"testing"
)

// A fake Gerrit must never be linked into the appliance: only test files
// may import this package. Imports lists non-test imports only.
func TestOnlyTestsImportGerrittest(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	const self = "github.com/firehose/firehose/appliance/gerrit/gerrittest"
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		checked++
		for _, imp := range f[1:] {
			if imp == self {
				t.Errorf("%s imports %s; only _test.go files may", f[0], self)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list saw only %d packages:\n%s", checked, out)
	}
}
