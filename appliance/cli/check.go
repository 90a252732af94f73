package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/daemon"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:        "check",
		Usage:       "validate a configuration file without touching the daemon",
		Description: "Runs the same checks the daemon runs at start and reload; exits 1 naming\nthe file, line and key of every problem.",
		Flags:       []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			if _, err := prepare(c); err != nil {
				return err
			}
			fmt.Fprintf(Stdout, "%s: ok\n", c.String("config"))
			return nil
		},
	}
}

// prepare runs the daemon's own checks on --config, outside the service.
func prepare(c *cli.Context) (*config.Config, error) {
	defer withUnitCredentials()()
	return daemon.Prepare(c.String("config"))
}
