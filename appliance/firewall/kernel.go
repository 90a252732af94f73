package firewall

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// load replaces the table with rs in one batch. Adding the table first makes
// the delete succeed whether or not it existed; the kernel applies the whole
// batch or none of it, so no packet ever sees a half-built table and the old
// rules stay if the batch fails.
func load(c *nftables.Conn, rs *ruleset) error {
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for _, s := range rs.sets {
		if err := c.AddSet(s.set, nil); err != nil {
			return err
		}
	}
	c.AddChain(rs.chain)
	for _, r := range rs.rules {
		for _, a := range r.anon {
			if err := c.AddSet(a.set, a.elems); err != nil {
				return err
			}
		}
		c.AddRule(&nftables.Rule{
			Table:    rs.table,
			Chain:    rs.chain,
			Exprs:    r.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.tag),
		})
	}
	return c.Flush()
}

// unload deletes the table if it exists, in one batch, touching nothing else.
func unload(c *nftables.Conn) error {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

// tablePresent reports whether the kernel holds a table of ours at all.
func tablePresent(c *nftables.Conn) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(ts, func(t *nftables.Table) bool { return t.Name == TableName }), nil
}

// drift says how the kernel's table differs from rs, or "" when it matches:
// the one input chain hooked with policy drop, holding exactly rs's rules.
func drift(c *nftables.Conn, rs *ruleset) (string, error) {
	ok, err := tablePresent(c)
	if err != nil || !ok {
		return "table missing", err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", err
	}
	var ours []*nftables.Chain
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == TableName {
			ours = append(ours, ch)
		}
	}
	if len(ours) != 1 || ours[0].Name != rs.chain.Name {
		return fmt.Sprintf("table has %d chains, want only %q", len(ours), rs.chain.Name), nil
	}
	ch := ours[0]
	if ch.Hooknum == nil || *ch.Hooknum != *rs.chain.Hooknum ||
		ch.Priority == nil || *ch.Priority != *rs.chain.Priority ||
		ch.Policy == nil || *ch.Policy != *rs.chain.Policy || ch.Type != rs.chain.Type {
		return "chain input changed (hook, priority, type or policy)", nil
	}
	rules, err := c.GetRules(rs.table, rs.chain)
	if err != nil {
		return "", err
	}
	if len(rules) != len(rs.rules) {
		return fmt.Sprintf("chain input has %d rules, want %d", len(rules), len(rs.rules)), nil
	}
	for i, r := range rules {
		if tag, _ := userdata.GetString(r.UserData, userdata.TypeComment); tag != rs.rules[i].tag {
			return fmt.Sprintf("rule %d changed", i+1), nil
		}
	}
	return "", nil
}

var errNeedCap = errors.New("operation not permitted (needs CAP_NET_ADMIN)")

// explain makes kernel errors actionable: EPERM is by far the common one, on
// developer machines and in containers.
func explain(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) {
		return errNeedCap
	}
	return err
}
