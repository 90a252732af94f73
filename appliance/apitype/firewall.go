package apitype

// FirewallStatus is the status of the nftables table. Owned by the firewall package.
type FirewallStatus struct {
	Enabled bool `json:"enabled"`
}
