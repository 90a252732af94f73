package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// printCluster shows the peers, the stream leader, replication and this
// node's fan-out lag.
func printCluster(w io.Writer, c *apitype.ClusterStatus) {
	state := "quorum"
	if !c.Quorum {
		state = "NO QUORUM (publishes refused; subscribers get nothing new)"
		if c.QuorumLostSince != nil {
			state += " since " + c.QuorumLostSince.Format(time.RFC3339)
		}
	}
	fmt.Fprintf(w, "\ncluster:\t%s\n", state)
	fmt.Fprintf(w, "  node:\t%s (%s, %d replicas)\n", c.Node, c.Mode, c.Replicas)
	if c.MetaLeader != "" {
		fmt.Fprintf(w, "  meta leader:\t%s\n", c.MetaLeader)
	}
	fmt.Fprintf(w, "  stream leader:\t%s\n", orNone(c.StreamLeader))
	for _, p := range c.Peers {
		name := p.Name
		if name == "" {
			name = "?"
		}
		conn := "connected"
		if !p.Connected {
			conn = "NOT CONNECTED"
			if p.LastSeenSeconds > 0 {
				conn += fmt.Sprintf(" (last seen %s ago)", (time.Duration(p.LastSeenSeconds * float64(time.Second))).Round(time.Second))
			}
		}
		addr := ""
		if p.Address != "" {
			addr = " " + p.Address
		}
		fmt.Fprintf(w, "  peer:\t%s%s\t%s\n", name, addr, conn)
	}
	for _, r := range c.StreamReplicas {
		s := "current"
		switch {
		case r.Offline:
			s = "offline"
		case !r.Current:
			s = "catching up"
		}
		fmt.Fprintf(w, "  replica:\t%s\t%s, lag %d, seen %.1fs ago\n", r.Name, s, r.Lag, r.ActiveSeconds)
	}
	fmt.Fprintf(w, "  fan-out lag:\t%d messages\n", c.ConsumerLag)
	if c.Refused > 0 {
		fmt.Fprintf(w, "  refused:\t%d publishes\n", c.Refused)
	}
	if c.LastError != "" && !c.Quorum {
		fmt.Fprintf(w, "  last error:\t%s\n", strings.ReplaceAll(c.LastError, "\n", "; "))
	}
}
