package apitype

// TLSStatus is the status of the TLS certificates. Owned by the tlsconf package.
type TLSStatus struct {
	Mode string `json:"mode"`
}
