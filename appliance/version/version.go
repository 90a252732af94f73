// Package version holds the appliance's version, set at build time from git:
// go build -ldflags "-X github.com/firehose/firehose/appliance/version.Version=$(git describe --tags --always --dirty)"
// (make build and the packages do).
package version

import "runtime/debug"

// Version is "dev" in builds that did not set it; String says more.
var Version = "dev"

// Unstamped ends the version of a build that did not set Version.
const Unstamped = "(built without a version stamp; `make build` sets one from git describe)"

// String is the version to show: Version when the build set it; otherwise
// the module version Go recorded from git (go build in a checkout), or "dev"
// (go run, go test), saying so and how to get a real one.
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return describe(Version, bi)
}

func describe(stamped string, bi *debug.BuildInfo) string {
	if stamped != "dev" {
		return stamped
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version + " " + Unstamped
	}
	return "dev " + Unstamped
}
