package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/control"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make the running daemon re-read its config, and wait for the outcome",
		Description: "Exits 0 once the new config is applied. A config with errors is refused whole:\n" +
			"the daemon keeps the running one, and this prints why and exits 1.",
		Flags: []cli.Flag{configFlag, socketFlag},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, 90*time.Second)
			defer cancel()
			r, err := client(c).Reload(ctx)
			if err != nil {
				if errors.Is(err, control.ErrNotRunning) {
					return &exitError{ExitNotRunning, err}
				}
				return err
			}
			if !r.Reloaded {
				return fmt.Errorf("reload refused, the daemon keeps its running config:\n%s", r.Err)
			}
			fmt.Fprintln(Stdout, "reloaded")
			return nil
		},
	}
}
