package apitype

import "time"

// FirewallStatus is the status of the appliance's nftables table
// ("table inet firehose"). Owned by the firewall package.
type FirewallStatus struct {
	// Enabled is [firewall] enabled from the running config.
	Enabled bool `json:"enabled"`
	// Table names the one table the appliance manages.
	Table string `json:"table"`
	// InPlace reports whether, at the last apply or check, the kernel held
	// the table with exactly the rules the config implies.
	InPlace bool `json:"in_place"`
	// LastApplied is when the table was last written to the kernel.
	LastApplied time.Time `json:"last_applied,omitzero"`
	// LastChecked is when the self-heal watcher last looked at the kernel.
	LastChecked time.Time `json:"last_checked,omitzero"`
	// LastError is why the last apply, removal or check failed; empty when
	// it succeeded.
	LastError string `json:"last_error,omitempty"`
	// Reapplied counts how often the table was found removed or altered
	// behind the daemon's back (e.g. by `flush ruleset`) and put back.
	Reapplied     int64     `json:"reapplied"`
	LastReapplied time.Time `json:"last_reapplied,omitzero"`

	// TCP and UDP are the ports accepted from anywhere.
	TCP []int `json:"tcp"`
	UDP []int `json:"udp"`
	// LimitedPorts are the broker ports held to NewConnectionsPerSource
	// ("50/second"); empty when there is no limit.
	LimitedPorts            []int  `json:"limited_ports,omitempty"`
	NewConnectionsPerSource string `json:"new_connections_per_source,omitempty"`
}
