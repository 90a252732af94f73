package cli

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/firewall"
)

func firewallCommand() *cli.Command {
	once := func(c *cli.Context, do func(*firewall.Manager) error) error {
		log := slog.New(slog.NewTextHandler(Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		m := firewall.NewManager(log, firewall.WithHealInterval(0))
		defer m.Close()
		return do(m)
	}
	return &cli.Command{
		Name:  "firewall",
		Usage: "show, apply or remove the appliance's nftables table (inet " + firewall.TableName + ")",
		Description: "The running daemon applies the table itself at start and on every reload, and\n" +
			"puts it back if something removes it. These commands are for operators and\n" +
			"package scripts; apply and remove need CAP_NET_ADMIN (root).",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "print the rules the config implies, in nft syntax, without touching the kernel",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					cfg, err := prepare(c)
					if err != nil {
						return err
					}
					fmt.Fprint(Stdout, firewall.Render(cfg))
					return nil
				},
			},
			{
				Name:  "apply",
				Usage: "load the table the config implies (removes it when [firewall] enabled = false)",
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					cfg, err := prepare(c)
					if err != nil {
						return err
					}
					return once(c, func(m *firewall.Manager) error { return m.Update(cfg) })
				},
			},
			{
				Name:  "remove",
				Usage: "delete the table; no other table is touched",
				Flags: []cli.Flag{configFlag}, // accepted for symmetry with apply; the table's name is fixed
				Action: func(c *cli.Context) error {
					return once(c, func(m *firewall.Manager) error { return m.Remove() })
				},
			},
		},
	}
}
