package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/urfave/cli/v2"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func subCommand() *cli.Command {
	return &cli.Command{
		Name:      "sub",
		Usage:     "subscribe to the bus and print what arrives (like mosquitto_sub)",
		UsageText: "firehosectl sub [-h HOST] [-p PORT] [--ws] -t FILTER [-t FILTER...] [-v] [-C COUNT]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Value: "localhost"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "default 1883, or 80 with --ws"},
			&cli.BoolFlag{Name: "ws", Usage: "connect over websockets"},
			&cli.StringSliceFlag{Name: "topic", Aliases: []string{"t"}, Required: true, Usage: "topic filter, e.g. 'gerrit/#'"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print the topic before each payload"},
			&cli.IntFlag{Name: "count", Aliases: []string{"C"}, Usage: "exit after this many messages"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Value: 0},
			// -h is the host, as in mosquitto_sub, so the usual help flag
			// is hidden and --help declared alone; the library shows the
			// help when a flag named "help" is set.
			&cli.BoolFlag{Name: "help", Usage: "show help", DisableDefaultText: true},
		},
		HideHelp: true,
		Action: func(c *cli.Context) error {
			port := c.Int("port")
			scheme := "tcp"
			if c.Bool("ws") {
				scheme = "ws"
				if port == 0 {
					port = 80
				}
			} else if port == 0 {
				port = 1883
			}
			url := scheme + "://" + net.JoinHostPort(c.String("host"), strconv.Itoa(port))
			if c.Bool("ws") {
				url += "/mqtt"
			}
			msgs := make(chan paho.Message, 1024)
			opts := paho.NewClientOptions().AddBroker(url).SetCleanSession(true).
				SetAutoReconnect(true).SetConnectTimeout(10 * time.Second).
				SetClientID(fmt.Sprintf("firehosectl-sub-%d", os.Getpid()))
			filters := map[string]byte{}
			for _, t := range c.StringSlice("topic") {
				filters[t] = byte(c.Int("qos"))
			}
			opts.SetOnConnectHandler(func(cl paho.Client) {
				cl.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { msgs <- m })
			})
			cl := paho.NewClient(opts)
			if tok := cl.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
				if tok.Error() != nil {
					return fmt.Errorf("connecting to %s: %w", url, tok.Error())
				}
				return fmt.Errorf("connecting to %s: timed out", url)
			}
			defer cl.Disconnect(250)
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(stop)
			for n := 0; c.Int("count") == 0 || n < c.Int("count"); n++ {
				select {
				case m := <-msgs:
					if c.Bool("verbose") {
						fmt.Fprintf(Stdout, "%s %s\n", m.Topic(), m.Payload())
					} else {
						fmt.Fprintf(Stdout, "%s\n", m.Payload())
					}
				case <-stop:
					return nil
				case <-c.Context.Done():
					return errors.New("interrupted")
				}
			}
			return nil
		},
	}
}
