package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"
)

func passwdCommand() *cli.Command {
	return &cli.Command{
		Name:      "passwd",
		Usage:     "print a bcrypt hash for a publisher's password_hash, reading the password from stdin",
		UsageText: "echo -n 'secret' | firehosectl passwd",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "cost", Value: bcrypt.DefaultCost, Usage: "bcrypt cost"},
		},
		Action: func(c *cli.Context) error {
			line, err := bufio.NewReader(Stdin).ReadString('\n')
			if err != nil && line == "" {
				return errors.New("no password on stdin")
			}
			pw := strings.TrimRight(line, "\r\n")
			if pw == "" {
				return errors.New("empty password")
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pw), c.Int("cost"))
			if err != nil {
				return err
			}
			fmt.Fprintln(Stdout, string(h))
			return nil
		},
	}
}
