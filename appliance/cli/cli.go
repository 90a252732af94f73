// Package cli owns firehosectl's command line: one file per subcommand. It
// reaches a running daemon only through the control API client, never by
// importing the broker (deps_test.go enforces it), so that every command an
// operator runs goes through the same door as systemd's ExecReload.
package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/control"
	"github.com/firehose/firehose/appliance/version"
)

// Stdout and Stderr are where commands print; tests replace them.
var (
	Stdout io.Writer = os.Stdout
	Stderr io.Writer = os.Stderr
	Stdin  io.Reader = os.Stdin
)

// Exit codes beyond 0 and 1.
const (
	ExitNotRunning = 3 // status: the daemon is not running
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// Main runs firehosectl with args and returns the exit code.
func Main(args []string) int {
	app := &cli.App{
		Name:    "firehosectl",
		Usage:   "the firehose appliance: a public MQTT event bus, and the tool to run it",
		Version: version.String(),
		Description: "firehosectl serve runs the daemon; the other commands operate it through its\n" +
			"control socket. Anyone may subscribe to any topic; only the publishers in the\n" +
			"config may publish, each under its own topics.",
		Writer:    Stdout,
		ErrWriter: Stderr,
		Reader:    Stdin,
		Commands: append([]*cli.Command{
			serveCommand(), checkCommand(), statusCommand(), reloadCommand(),
			subCommand(), passwdCommand(), versionCommand(), firewallCommand(),
		}, installCommands()...),
		HideVersion:          true,
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {},
	}
	err := app.Run(args)
	if err == nil {
		return 0
	}
	fmt.Fprintln(Stderr, "firehosectl:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Value:   config.DefaultPath,
	EnvVars: []string{"FIREHOSE_CONFIG"},
	Usage:   "the configuration file",
}

var socketFlag = &cli.StringFlag{
	Name:    "socket",
	EnvVars: []string{"FIREHOSE_SOCKET"},
	Usage:   "the daemon's control socket (default: [control] socket from --config)",
}

// client finds the control socket: --socket, else the [control] socket of
// --config, else the packaged default when that file does not exist. The
// config is read leniently, only for the socket, so that a file with errors
// still leads to its daemon, which then says what is wrong with it.
func client(c *cli.Context) *control.Client {
	if s := c.String("socket"); s != "" {
		return &control.Client{Socket: s, From: "given by --socket or FIREHOSE_SOCKET"}
	}
	path := c.String("config")
	sock, err := config.ControlSocket(path)
	if err != nil {
		def := config.Default().Control.Socket
		if errors.Is(err, fs.ErrNotExist) {
			return &control.Client{Socket: def, From: "the default, as " + path + " does not exist"}
		}
		return &control.Client{Socket: def, From: fmt.Sprintf("the default, as the config cannot be read (%v)", err)}
	}
	return &control.Client{Socket: sock, From: "the [control] socket of " + path}
}
