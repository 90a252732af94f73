package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/control"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:        "status",
		Usage:       "show the running daemon's state",
		Description: "Exit status: 0 ok, 1 degraded (the reasons are printed), 3 not running.",
		Flags: []cli.Flag{configFlag, socketFlag,
			&cli.BoolFlag{Name: "json", Usage: "print the status exactly as the daemon serves it"}},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			cl := client(c)
			raw, err := cl.StatusRaw(ctx)
			if err != nil {
				if errors.Is(err, control.ErrNotRunning) {
					return &exitError{ExitNotRunning, err}
				}
				return err
			}
			var st apitype.Status
			if err := jsonUnmarshal(raw, &st); err != nil {
				return err
			}
			if c.Bool("json") {
				fmt.Fprintln(Stdout, strings.TrimSpace(string(raw)))
			} else {
				printStatus(&st)
			}
			if st.State != apitype.StateOK {
				return &exitError{1, fmt.Errorf("degraded: %s", strings.Join(st.Reasons, "; "))}
			}
			return nil
		},
	}
}

func printStatus(st *apitype.Status) {
	w := tabwriter.NewWriter(Stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "state:\t%s\n", st.State)
	for _, r := range st.Reasons {
		fmt.Fprintf(w, "  reason:\t%s\n", r)
	}
	fmt.Fprintf(w, "version:\t%s\n", st.Version)
	fmt.Fprintf(w, "config:\t%s\n", st.Config)
	fmt.Fprintf(w, "uptime:\t%s (since %s)\n", (time.Duration(st.UptimeSeconds) * time.Second).String(), st.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "clients:\t%d\t(%d connections)\n", st.Clients, st.Connections)
	fmt.Fprintf(w, "subscriptions:\t%d\n", st.Subscriptions)
	m := st.Messages
	fmt.Fprintf(w, "messages in:\t%.1f/s\t%d total\n", m.ReceivedPerSec, m.ReceivedTotal)
	fmt.Fprintf(w, "messages out:\t%.1f/s\t%d total\n", m.SentPerSec, m.SentTotal)
	fmt.Fprintf(w, "messages dropped:\t%.1f/s\t%d total\n", m.DroppedPerSec, m.DroppedTotal)
	fmt.Fprintf(w, "refused:\t%s\n", refusals(st.Refusals))
	if st.Redacted {
		fmt.Fprintf(w, "publishers:\t(hidden: only root, the daemon's user and group %s see the details)\n", control.Group)
	} else {
		fmt.Fprintf(w, "publishers:\t%s\n", orNone(strings.Join(st.Publishers, ", ")))
	}
	if r := st.LastReload; r != nil {
		res := "ok"
		if !r.OK {
			res = "FAILED: " + strings.ReplaceAll(r.Error, "\n", "; ")
		}
		fmt.Fprintf(w, "last reload:\t%s\t%s\n", r.Time.Format(time.RFC3339), res)
	} else {
		fmt.Fprintf(w, "last reload:\tnever\n")
	}
	fmt.Fprintf(w, "\nLISTENER\tADDRESS\tFROM\tTLS\tCLIENTS\n")
	for _, l := range st.Listeners {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", l.Name, l.Address, l.Source, yesNo(l.TLS), l.Clients)
	}
	if len(st.Gerrit) > 0 {
		fmt.Fprintf(w, "\nGERRIT\tSERVER\tSTATE\tSINCE\tLAST EVENT\tPUBLISHED\tREPLAYED\tDUPLICATES\tBAD LINES\tRECONNECTS\n")
		for _, g := range st.Gerrit {
			state := g.State
			if g.LastError != "" && g.State != apitype.GerritStreaming {
				state += " (" + g.LastError + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", g.Name, g.Server, state, ago(g.ConnectedSince), ago(g.LastEvent),
				g.EventsPublished, g.Replayed, g.DuplicatesSkipped, g.ParseErrors+g.LinesTooLong, g.Reconnects)
		}
	}
	if t := st.TLS; t != nil {
		fmt.Fprintf(w, "\ntls:\t%s\n", t.Mode)
		for _, c := range t.Certificates {
			fmt.Fprintf(w, "  certificate:\t%s\tissuer %s\texpires %s\n", strings.Join(c.Names, ","), c.Issuer, c.NotAfter.Format(time.RFC3339))
		}
		for _, p := range t.Pending {
			fmt.Fprintf(w, "  pending:\t%s\n", p)
		}
		if e := t.LastACMEError; e != nil {
			fmt.Fprintf(w, "  last acme error:\t%s\t%s: %s\n", e.Time.Format(time.RFC3339), e.Domain, e.Error)
		}
	}
	if j := st.Journal; j != nil {
		printJournal(w, j, st.Cluster != nil)
	}
	if c := st.Cluster; c != nil {
		printCluster(w, c)
	}
	if m := st.Metrics; m != nil {
		switch {
		case !m.Enabled:
			fmt.Fprintf(w, "\nmetrics:\toff\n")
		case m.Address != "":
			fmt.Fprintf(w, "\nmetrics:\thttp://%s/metrics\n", m.Address)
		default:
			fmt.Fprintf(w, "\nmetrics:\tnot serving on %s: %s\n", m.Listen, m.LastError)
		}
	}
	if f := st.Firewall; f != nil {
		state := "disabled"
		if f.Enabled {
			state = "not in place"
			if f.InPlace {
				state = "in place"
			}
		}
		fmt.Fprintf(w, "\nfirewall:\t%s (table %s)\n", state, f.Table)
		if !f.LastApplied.IsZero() {
			fmt.Fprintf(w, "  last applied:\t%s\treapplied %d times\n", f.LastApplied.Format(time.RFC3339), f.Reapplied)
		}
		if f.LastError != "" {
			fmt.Fprintf(w, "  last error:\t%s\n", f.LastError)
		}
	}
}

// refusals lists the kinds refused at least once, most first.
func refusals(m map[string]int64) string {
	kinds := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Slice(kinds, func(i, j int) bool {
		if m[kinds[i]] != m[kinds[j]] {
			return m[kinds[i]] > m[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return orNone(strings.Join(parts, ", "))
}

func ago(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
