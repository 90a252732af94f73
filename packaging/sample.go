// Package packaging holds what the packages ship that Go code also needs:
// the sample configuration, so that `firehosectl install` writes the same
// file the deb and rpm install as /etc/firehose/firehose.toml.
package packaging

import _ "embed"

// SampleConfig is packaging/firehose.toml.
//
//go:embed firehose.toml
var SampleConfig []byte
