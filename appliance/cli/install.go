package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/install"
)

func installCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "install",
			Usage: "set up this host without a package manager: what `apt install firehose` does",
			Description: "Copies this binary to /usr/local/bin, creates the firehose user and group,\n" +
				"writes the systemd units (the same files the packages ship, embedded here),\n" +
				"writes /etc/firehose/firehose.toml if it is absent, enables and starts the\n" +
				"sockets, applies the firewall and starts the service. Run as root.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "no-start", Usage: "write files and create the account, start nothing"},
			},
			Action: func(c *cli.Context) error {
				return install.Install(install.Options{NoStart: c.Bool("no-start"), Stdout: Stdout})
			},
		},
		{
			Name:        "uninstall",
			Usage:       "undo `firehosectl install`: stop and remove the units and the firewall table",
			Description: "Keeps the configuration and state unless --purge is given. Run as root.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "purge", Usage: "also remove /etc/firehose and /var/lib/firehose"},
			},
			Action: func(c *cli.Context) error {
				return install.Uninstall(install.Options{Purge: c.Bool("purge"), Stdout: Stdout})
			},
		},
	}
}
