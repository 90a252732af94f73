package tlsconf

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// filesSource serves one certificate loaded from cert_file and key_file.
// A reload builds a new filesSource, so one never changes once built.
type filesSource struct {
	file string
	cert *tls.Certificate
}

// loadFiles reads and checks the pair named by c. Its errors name the key at
// fault, so the operator knows which file to fix.
func loadFiles(c *config.Config) (*filesSource, error) {
	certKey := config.Key{"tls", "cert_file"}
	keyKey := config.Key{"tls", "key_file"}
	t := c.TLS

	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		return nil, c.ErrorAt(certKey, "cannot read the certificate: %v", pathErr(err))
	}
	var chain [][]byte
	var leaf *x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, c.ErrorAt(certKey, "%s: certificate %d does not parse: %v", t.CertFile, len(chain)+1, err)
		}
		if leaf == nil {
			leaf = x
		}
		chain = append(chain, b.Bytes)
	}
	if leaf == nil {
		return nil, c.ErrorAt(certKey, "%s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", t.CertFile)
	}

	keyPEM, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return nil, c.ErrorAt(keyKey, "cannot read the private key: %v", pathErr(err))
	}
	var key crypto.Signer
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if key, err = parseKey(b.Bytes); err != nil {
			return nil, c.ErrorAt(keyKey, "%s: %v", t.KeyFile, err)
		}
		break
	}
	if key == nil {
		return nil, c.ErrorAt(keyKey, "%s holds no PEM private key (\"-----BEGIN ... PRIVATE KEY-----\")", t.KeyFile)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, c.ErrorAt(keyKey, "%s does not match the certificate in %s (for %s)", t.KeyFile, t.CertFile, strings.Join(certNames(leaf), ", "))
	}
	return &filesSource{
		file: t.CertFile,
		cert: &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
	}, nil
}

// parseKey accepts the encodings openssl and common tools write; encrypted
// keys are refused because nobody could type the passphrase at boot.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("the private key does not parse (want unencrypted PKCS#8, PKCS#1 or EC)")
}

func (s *filesSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

func (s *filesSource) status(st *apitype.TLSStatus) {
	c := certStatus(s.cert.Leaf)
	c.File = s.file
	st.Certificates = append(st.Certificates, c)
}

func (s *filesSource) problems(now time.Time) []string {
	if p := expiryProblem(s.cert.Leaf, now); p != "" {
		return []string{p}
	}
	return nil
}

func (s *filesSource) start() error { return nil }
func (s *filesSource) close()       {}

func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
