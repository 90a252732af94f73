package firewall

import (
	"strings"

	"github.com/firehose/firehose/appliance/config"
)

// Render returns, in nft syntax, the table the config implies: exactly what
// Manager.Update loads, comments included, so `nft -f` accepts it and
// `nft list table inet firehose` shows the same rules. It never touches the
// kernel.
func Render(c *config.Config) string {
	var b strings.Builder
	if !c.Firewall.Enabled {
		b.WriteString("# [firewall] enabled = false: firehose loads no table.\n# With enabled = true it would load:\n")
	}
	rs := newPlan(c).build()
	b.WriteString("table inet " + TableName + " {\n")
	for _, s := range rs.sets {
		b.WriteString("\tset " + s.set.Name + " {\n")
		for line := range strings.SplitSeq(s.text, "\n") {
			b.WriteString("\t\t" + line + "\n")
		}
		b.WriteString("\t}\n\n")
	}
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n")
	for _, r := range rs.rules {
		b.WriteString("\t\t" + r.text + ` comment "` + r.tag + `"` + "\n")
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
