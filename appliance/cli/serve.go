package cli

import (
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/daemon"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the daemon (systemd starts it as firehose.service)",
		Description: "Serves MQTT on [broker] mqtt, MQTT over websockets on [broker] websocket, and,\n" +
			"with [tls] on, their TLS versions. Sockets handed over by systemd (named mqtt, ws,\n" +
			"mqtts, wss) are used instead of binding. SIGHUP reloads, SIGTERM stops.",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(Stderr, &slog.HandlerOptions{Level: level}))
			return daemon.Run(c.Context, c.String("config"), log)
		},
	}
}
