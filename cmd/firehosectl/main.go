// Command firehosectl is the firehose appliance: the daemon (serve) and the
// tool that operates it.
package main

import (
	"os"

	"github.com/firehose/firehose/appliance/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
