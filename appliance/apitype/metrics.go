package apitype

// MetricsStatus is the status of the Prometheus endpoint. Owned by the
// metrics package.
type MetricsStatus struct {
	// Enabled is [metrics] enabled from the running config.
	Enabled bool `json:"enabled"`
	// Listen is the configured address; Address the socket's local address
	// once bound (empty while it cannot be).
	Listen  string `json:"listen"`
	Address string `json:"address,omitempty"`
	// LastError is why the address could not be bound; it is retried.
	LastError string `json:"last_error,omitempty"`
}
