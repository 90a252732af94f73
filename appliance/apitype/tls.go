package apitype

import "time"

// TLSStatus is the status of the TLS certificates. Owned by the tlsconf package.
type TLSStatus struct {
	Mode string `json:"mode"` // off, files or acme

	// Certificates are those served now, one per certificate (files mode has one).
	Certificates []TLSCertificate `json:"certificates,omitempty"`

	// Pending lists the ACME domains that have no certificate yet.
	Pending []string `json:"pending,omitempty"`

	// ACMECA is the ACME directory in use (acme mode only).
	ACMECA string `json:"acme_ca,omitempty"`

	// LastACMEError is the most recent failure to obtain or renew a
	// certificate, kept after later successes so an operator can see what
	// happened; a failure newer than the last success also makes the appliance
	// degraded.
	LastACMEError *ACMEError `json:"last_acme_error,omitempty"`
}

// TLSCertificate is one certificate being served.
type TLSCertificate struct {
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	File     string    `json:"file,omitempty"` // files mode: the cert_file it came from
}

// ACMEError is one failed attempt to obtain or renew a certificate.
type ACMEError struct {
	Time    time.Time `json:"time"`
	Domain  string    `json:"domain"`
	Renewal bool      `json:"renewal"`
	Error   string    `json:"error"`
}
