package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/firehose/firehose/appliance/apitype"
)

// DefaultSocket is where the packaged daemon listens.
const DefaultSocket = "/run/firehose/control.sock"

// ErrNotRunning means nothing answers on the control socket.
var ErrNotRunning = errors.New("the firehose daemon is not running")

// NotRunningError says which socket was tried, why that one, and what to
// do next.
type NotRunningError struct {
	Socket string
	From   string // why this socket: see Client.From
	Err    error
}

func (e *NotRunningError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the firehose daemon is not running: nothing answers on %s (%v)", e.Socket, e.Err)
	if e.From != "" {
		fmt.Fprintf(&b, ", %s", e.From)
	}
	b.WriteString(".\nFor a daemon started with another config, name it: --config FILE (or FIREHOSE_CONFIG=FILE), or its socket: --socket PATH.\n")
	sudo := ""
	if os.Geteuid() != 0 {
		sudo = "sudo "
	}
	fmt.Fprintf(&b, "To start the installed service: %ssystemctl start firehose (its firehose-*.socket units start with it);\n"+
		"without systemd: firehosectl serve --config FILE", sudo)
	return b.String()
}

func (e *NotRunningError) Unwrap() error { return ErrNotRunning }

// Client talks to the daemon's control socket. The zero value uses DefaultSocket.
type Client struct {
	Socket string
	// From says where Socket came from ("the [control] socket of F"), for
	// the message when nothing answers there.
	From string
}

func (c *Client) socket() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

func (c *Client) http() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket())
		},
	}}
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*apitype.Status, error) {
	var st apitype.Status
	return &st, c.do(ctx, http.MethodGet, "/v0/status", &st)
}

// StatusRaw returns the status exactly as the daemon served it.
func (c *Client) StatusRaw(ctx context.Context) ([]byte, error) {
	var raw json.RawMessage
	err := c.do(ctx, http.MethodGet, "/v0/status", &raw)
	return raw, err
}

// Reload asks the daemon to re-read its config and waits for the outcome.
// A rejected config is not an error here: see ReloadResponse.Err.
func (c *Client) Reload(ctx context.Context) (*apitype.ReloadResponse, error) {
	var r apitype.ReloadResponse
	return &r, c.do(ctx, http.MethodPost, "/v0/reload", &r)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://firehose"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return &NotRunningError{Socket: c.socket(), From: c.From, Err: unwrapDial(err)}
		}
		return fmt.Errorf("control socket %s: %w", c.socket(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.socket(), err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apitype.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Err != "" {
			return errors.New(e.Err)
		}
		return fmt.Errorf("control API: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, out)
}

func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}
