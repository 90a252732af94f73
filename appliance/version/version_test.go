package version

import (
	"runtime/debug"
	"testing"
)

// Issue 15: `go run` reported "dev" and nothing said so or how to get a real
// version.
func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped", "v0.2.0-3-gabc", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-x"}}, "v0.2.0-3-gabc"},
		{"go_build_in_a_checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201120000-0123456789ab+dirty"}}, "v0.0.0-20261201120000-0123456789ab+dirty " + Unstamped},
		{"go_run", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev " + Unstamped},
		{"no_build_info", "dev", nil, "dev " + Unstamped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(tc.stamped, tc.bi); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
