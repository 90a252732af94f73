package daemon

import (
	"fmt"
	"strings"

	"github.com/firehose/firehose/appliance/config"
)

// fixedCluster refuses [cluster] changes only a restart can make, by
// name. cluster.peers may change live: nats-server adds and removes
// routes on reload.
func fixedCluster(old, next config.Cluster) []error {
	var errs []error
	for _, f := range []struct {
		key      string
		old, new string
	}{
		{"cluster.name", old.Name, next.Name},
		{"cluster.listen", old.Listen, next.Listen},
		{"cluster.replicas", fmt.Sprint(old.Replicas), fmt.Sprint(next.Replicas)},
		{"cluster.tls_cert", old.TLSCert, next.TLSCert},
		{"cluster.tls_key", old.TLSKey, next.TLSKey},
		{"cluster.tls_ca", old.TLSCA, next.TLSCA},
		{"cluster.nats_urls", strings.Join(old.NATSURLs, ","), strings.Join(next.NATSURLs, ",")},
		{"cluster.creds_file", old.CredsFile, next.CredsFile},
		{"cluster.user", old.User, next.User},
		{"cluster.password_file", old.PasswordFile, next.PasswordFile},
		{"cluster.token_file", old.TokenFile, next.TokenFile},
		{"cluster.dedupe_window", old.DedupeWindow.D().String(), next.DedupeWindow.D().String()},
	} {
		if f.old != f.new {
			errs = append(errs, fmt.Errorf("reload not supported for %s: old=%q, new=%q (restart firehose to change it)", f.key, f.old, f.new))
		}
	}
	return errs
}
