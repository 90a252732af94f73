// Package version holds the appliance's version, set at build time from git:
// go build -ldflags "-X github.com/firehose/firehose/appliance/version.Version=$(git describe --tags --always --dirty)"
package version

// Version is "dev" in builds that did not set it.
var Version = "dev"
