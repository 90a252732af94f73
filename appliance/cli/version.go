package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/version"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(*cli.Context) error {
			fmt.Fprintln(Stdout, version.String())
			return nil
		},
	}
}
