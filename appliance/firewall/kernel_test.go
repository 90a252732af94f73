package firewall

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/firehose/firehose/appliance/config"
)

// Ports used inside the test namespaces; nothing else listens there.
const (
	portMQTT  = 1883
	portWS    = 8080
	portMQTTS = 8883 // configured, but TLS is off: must stay closed
	portSSH   = 2222 // allow_tcp
	portOther = 5555 // listening, not allowed
)

func testConfig() *config.Config {
	c := config.Default()
	c.Broker.MQTT = fmt.Sprintf(":%d", portMQTT)
	c.Broker.Websocket = fmt.Sprintf("[::]:%d", portWS)
	c.Broker.MQTTS = fmt.Sprintf(":%d", portMQTTS)
	c.Broker.WebsocketTLS = ""
	c.Firewall.Enabled = true
	c.Firewall.AllowTCP = []int{portSSH}
	return c
}

func (l *lab) manager(t *testing.T, opts ...Option) *Manager {
	t.Helper()
	m := NewManager(nil, append([]Option{WithNetNS(l.srv.fd), WithHealInterval(0)}, opts...)...)
	t.Cleanup(m.Close)
	return m
}

func (l *lab) conn(t *testing.T) *nftables.Conn { t.Helper(); return mustConn(t, l.srv.fd) }

func mustConn(t *testing.T, fd int) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (l *lab) hasTable(t *testing.T) bool {
	t.Helper()
	ok, err := tablePresent(l.conn(t))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestApplyFromOutside(t *testing.T) {
	l := newLab(t)
	for _, p := range []int{portMQTT, portWS, portMQTTS, portSSH, portOther} {
		l.listen(t, p)
	}
	// Without the table everything is reachable, so a block below is the
	// table's doing.
	l.mustConnect(t, srv4, portOther)
	l.mustConnect(t, srv6, portMQTTS)

	m := l.manager(t)
	if err := m.Update(testConfig()); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{srv4, srv6} {
		t.Run(strings.ReplaceAll(host, ":", "_"), func(t *testing.T) {
			l.mustConnect(t, host, portMQTT)
			l.mustConnect(t, host, portWS)
			l.mustConnect(t, host, portSSH)
			l.mustBeBlocked(t, host, portOther)
			l.mustBeBlocked(t, host, portMQTTS)
		})
	}
	// Loopback inside the host stays open.
	err := l.srv.do(func() error {
		c, err := dialTimeout(fmt.Sprintf("127.0.0.1:%d", portOther), connectTimeout)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("loopback connection to a closed port: %v", err)
	}

	st := m.Status()
	if !st.Enabled || !st.InPlace || st.LastApplied.IsZero() || st.LastError != "" || st.Table != "inet firehose" {
		t.Errorf("status = %+v, want enabled, in place, applied, no error", st)
	}
	if want := []int{portMQTT, portSSH, portWS}; !slices.Equal(st.TCP, want) {
		t.Errorf("status tcp = %v, want %v", st.TCP, want)
	}
	if p := m.Problems(); p != nil {
		t.Errorf("problems = %q, want none", p)
	}
}

func TestEstablishedSurvivesReapply(t *testing.T) {
	l := newLab(t)
	l.listen(t, portSSH)
	m := l.manager(t)
	c := testConfig()
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	conn, err := l.dial(srv4, portSSH, connectTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(when string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(connectTimeout))
		msg := []byte("ping " + when)
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("%s: write: %v", when, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: echo = %q, %v", when, got, err)
		}
	}
	echo("before")
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	echo("after re-applying the same rules")

	// Closing the port to new connections keeps the established one.
	c2 := testConfig()
	c2.Firewall.AllowTCP = nil
	if err := m.Update(c2); err != nil {
		t.Fatal(err)
	}
	l.mustBeBlocked(t, srv4, portSSH)
	echo("after the port was closed")
}

func TestUpdateTakesEffect(t *testing.T) {
	l := newLab(t)
	for _, p := range []int{portMQTT, portSSH, portOther, 3333} {
		l.listen(t, p)
	}
	m := l.manager(t)
	c := testConfig()
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	l.mustBeBlocked(t, srv4, 3333)

	c2 := testConfig()
	c2.Broker.MQTT = ""
	c2.Firewall.AllowTCP = []int{3333}
	if err := m.Update(c2); err != nil {
		t.Fatal(err)
	}
	l.mustConnect(t, srv4, 3333)
	l.mustConnect(t, srv6, 3333)
	l.mustBeBlocked(t, srv4, portSSH)
	l.mustBeBlocked(t, srv4, portMQTT)

	c3 := testConfig()
	c3.Firewall.Enabled = false
	if err := m.Update(c3); err != nil {
		t.Fatal(err)
	}
	if l.hasTable(t) {
		t.Fatal("enabled = false left the table in place")
	}
	l.mustConnect(t, srv4, portOther)
	if st := m.Status(); st.Enabled || st.InPlace {
		t.Errorf("status after disabling = %+v", st)
	}
}

func TestSelfHeal(t *testing.T) {
	l := newLab(t)
	l.listen(t, portOther)
	m := l.manager(t, WithHealInterval(50*time.Millisecond))
	if err := m.Update(testConfig()); err != nil {
		t.Fatal(err)
	}
	applied := m.Status().LastApplied

	breakers := []struct {
		name string
		do   func(c *nftables.Conn)
	}{
		// What Debian's nftables.service does on start, reload and stop.
		{"flush_ruleset", func(c *nftables.Conn) { c.FlushRuleset() }},
		{"delete_table", func(c *nftables.Conn) { c.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}) }},
		{"flush_chain", func(c *nftables.Conn) {
			c.FlushChain(&nftables.Chain{Name: "input", Table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}})
		}},
		{"add_rule", func(c *nftables.Conn) {
			t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
			c.InsertRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: "input", Table: t},
				Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		}},
		{"policy_accept", func(c *nftables.Conn) {
			t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
			accept := nftables.ChainPolicyAccept
			c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		}},
	}
	for i, b := range breakers {
		t.Run(b.name, func(t *testing.T) {
			c := l.conn(t)
			b.do(c)
			if err := c.Flush(); err != nil {
				t.Fatalf("breaking the table: %v", err)
			}
			want := int64(i + 1)
			eventually(t, 5*time.Second, fmt.Sprintf("re-applied count %d", want), func() bool {
				return m.Status().Reapplied == want
			})
			why, err := drift(l.conn(t), newPlan(testConfig()).build())
			if err != nil || why != "" {
				t.Fatalf("after healing: drift %q, %v", why, err)
			}
			st := m.Status()
			if !st.InPlace || !st.LastApplied.After(applied) || st.LastReapplied.IsZero() {
				t.Errorf("status = %+v", st)
			}
			applied = st.LastApplied
			l.mustBeBlocked(t, srv4, portOther)
		})
	}

	// A healthy table is left alone.
	before := m.Status()
	eventually(t, 5*time.Second, "two more checks", func() bool {
		return m.Status().LastChecked.After(before.LastChecked.Add(100 * time.Millisecond))
	})
	if st := m.Status(); st.Reapplied != before.Reapplied || !st.LastApplied.Equal(before.LastApplied) {
		t.Errorf("an intact table was re-applied: %+v", st)
	}

	// After Close nothing heals, and the table stays.
	m.Close()
	if !l.hasTable(t) {
		t.Fatal("Close removed the table")
	}
}

// TestSelfHealOnEvent checks that nftables events, not the timer, bring the
// table back: the timer here would take an hour.
func TestSelfHealOnEvent(t *testing.T) {
	l := newLab(t)
	base := runtime.NumGoroutine()
	m := l.manager(t, WithHealInterval(time.Hour))
	if err := m.Update(testConfig()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c := l.conn(t)
		c.FlushRuleset()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, fmt.Sprintf("re-applied %d times", i+1), func() bool {
			return m.Status().Reapplied == int64(i+1) && l.hasTable(t)
		})
	}
	// Close ends the watcher and the event subscription.
	m.Close()
	eventually(t, 5*time.Second, "goroutines back to where they were", func() bool {
		return runtime.NumGoroutine() <= base
	})
}

func TestRemoveAndOtherTables(t *testing.T) {
	l := newLab(t)
	l.listen(t, portOther)

	// Someone else's tables: an accepting ip filter with a rule, and an inet
	// table with a set. They must come through untouched.
	c := l.conn(t)
	filter := c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: "INPUT", Table: filter, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: filter, Chain: in, Exprs: []expr.Any{&expr.Counter{}}})
	other := c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	if err := c.AddSet(&nftables.Set{Table: other, Name: "blocklist", KeyType: nftables.TypeIPAddr},
		[]nftables.SetElement{{Key: []byte{192, 0, 2, 7}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l)

	m := l.manager(t)
	cfg := testConfig()
	cfg.Firewall.NewConnectionsPerSource = config.Rate{Count: 50, Per: time.Second}
	cfg.Firewall.AllowUDP = []int{53, 123}
	if err := m.Update(cfg); err != nil {
		t.Fatal(err)
	}
	l.mustBeBlocked(t, srv4, portOther)
	if err := m.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	after := snapshot(t, l)
	if before != after {
		t.Errorf("ruleset after apply and remove differs from before:\n--- before\n%s--- after\n%s", before, after)
	}
	if strings.Contains(after, TableName) {
		t.Errorf("remove left a trace:\n%s", after)
	}
	l.mustConnect(t, srv4, portOther)
	if st := m.Status(); st.InPlace {
		t.Errorf("status after Remove = %+v", st)
	}
}

// snapshot describes every table, chain, rule and named set in srv, through
// netlink, and through nft when it is installed.
func snapshot(t *testing.T, l *lab) string {
	t.Helper()
	c := l.conn(t)
	var b strings.Builder
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(tables, func(a, b *nftables.Table) int { return strings.Compare(a.Name, b.Name) })
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		fmt.Fprintf(&b, "table %d %s\n", tb.Family, tb.Name)
		for _, ch := range chains {
			if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  chain %s: %d rules\n", ch.Name, len(rules))
		}
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  set %s: %d elements\n", s.Name, len(elems))
		}
	}
	if out, ok := nft(t, l, "list", "ruleset"); ok {
		b.WriteString(out)
	}
	return b.String()
}

// nft runs the nft command (Debian package nftables) in srv as an
// independent reader of the kernel; ok is false when it is not installed.
func nft(t *testing.T, l *lab, args ...string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		return "", false
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.srv.name, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), true
}

func TestRateLimitPerSource(t *testing.T) {
	l := newLab(t)
	l.listen(t, portMQTT)
	l.listen(t, portSSH)
	m := l.manager(t)
	c := testConfig()
	c.Firewall.NewConnectionsPerSource = config.Rate{Count: 3, Per: time.Hour}
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	// Each address family has its own set, so each source gets 3.
	for _, host := range []string{srv4, srv6} {
		for range 3 {
			l.mustConnect(t, host, portMQTT)
		}
		l.mustBeBlocked(t, host, portMQTT)
	}
	// One entry per source, and each expires: the sets cannot fill with
	// sources long gone.
	for _, name := range []string{"flood4", "flood6"} {
		set := &nftables.Set{Table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}, Name: name,
			KeyType: map[string]nftables.SetDatatype{"flood4": nftables.TypeIPAddr, "flood6": nftables.TypeIP6Addr}[name]}
		elems, err := l.conn(t).GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		if len(elems) != 1 || elems[0].Expires <= 0 || elems[0].Expires > time.Hour {
			t.Errorf("set %s: %d elements %+v, want one that expires within the hour", name, len(elems), elems)
		}
	}
	// ssh is not a broker port: never limited.
	for range 5 {
		l.mustConnect(t, srv4, portSSH)
	}
	if st := m.Status(); st.NewConnectionsPerSource != "3/hour" || !slices.Equal(st.LimitedPorts, []int{portMQTT, portWS}) {
		t.Errorf("status = %+v", st)
	}
}

// TestNftAgrees uses the nft command as an independent reader: what the
// kernel holds after Update lists exactly as Render prints it, and Render's
// text loaded by nft is what the self-heal check expects.
func TestNftAgrees(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipped: the nft command (Debian package nftables) is not installed")
	}
	files, _ := filepath.Glob("testdata/*.toml")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".toml"), func(t *testing.T) {
			c, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			c.Firewall.Enabled = true
			want := Render(c)

			l := &lab{srv: newNetNS(t, "srv")}
			if err := l.manager(t).Update(c); err != nil {
				t.Fatal(err)
			}
			got, _ := nft(t, l, "list", "table", "inet", TableName)
			if got != want {
				t.Errorf("nft list table differs from Render:\n--- nft\n%s--- Render\n%s", got, want)
			}

			l2 := &lab{srv: newNetNS(t, "srv")}
			path := filepath.Join(t.TempDir(), "rules.nft")
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			nft(t, l2, "-f", path)
			why, err := drift(l2.conn(t), newPlan(c).build())
			if err != nil || why != "" {
				t.Errorf("Render loaded by nft: drift %q, %v; want none", why, err)
			}
		})
	}
}
