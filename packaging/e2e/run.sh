#!/bin/sh
# End-to-end test of the packages under a real systemd and a real apt: boots
# a cached Debian 12 rootfs with systemd-nspawn (own network namespace, so the
# firewall tests touch nothing of this host) and runs guest.sh inside it;
# then cluster.sh boots two containers from the same rootfs, clustered over
# a link only they share. Needs root, debootstrap and systemd-container. Run
# by `make e2e`, which first builds dist/repo (release 1) and
# dist/e2e/upgrade (releases 2 and 3).
#
#   FIREHOSE_E2E_CACHE  where the rootfs is cached (default /var/cache/firehose-e2e)
#   FIREHOSE_E2E_KEEP=1 keep the containers' files after the run, for debugging
#   FIREHOSE_E2E_HOLD=N keep the containers up N seconds after the checks, to
#                       look around with nsenter -t <pid> -a (pids are printed)
#   FIREHOSE_E2E_CLUSTER=0  skip the cluster part
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dist=$top/dist
cache=${FIREHOSE_E2E_CACHE:-/var/cache/firehose-e2e}
suite=bookworm
# Everything the guest needs comes with the cached rootfs: the run itself
# has no network, apt reads only our own repositories.
include=systemd,systemd-sysv,dbus,mosquitto-clients,nftables,iproute2,procps,python3-paho-mqtt,rpm
key=$(printf '%s %s\n' "$suite" "$include" | sha256sum | cut -c1-12)
rootfs=$cache/rootfs-$suite-$key

. "$here/boot.sh"

E2E=e2e
. "$here/steps.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root (it boots a container)"
for tool in debootstrap systemd-nspawn nsenter mount openssl; do
	command -v $tool >/dev/null || die "$tool not found (apt-get install debootstrap systemd-container)"
done
[ -f "$dist/repo/Packages" ] || die "no apt repository in $dist/repo (run: make repo)"
[ -f "$dist/e2e/upgrade/Packages" ] || die "no upgrade repository in $dist/e2e/upgrade (run: make e2e)"
ls "$dist"/e2e/rpm/*.rpm >/dev/null 2>&1 || die "no rpms in $dist/e2e/rpm (run: make e2e)"
[ -x "$dist/stage/amd64/firehosectl" ] || die "no $dist/stage/amd64/firehosectl (run: make package)"

mkdir -p "$cache"
if [ ! -e "$rootfs/.complete" ]; then
	say "building the rootfs cache $rootfs (about a minute)"
	rm -rf "$rootfs.tmp"
	# The mirror is debootstrap's default.
	debootstrap --variant=minbase --include="$include" "$suite" "$rootfs.tmp" >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed; see $cache/debootstrap.log"
	touch "$rootfs.tmp/.complete"
	rm -rf "$rootfs"
	mv "$rootfs.tmp" "$rootfs"
	# Caches for other package lists are dead weight now.
	for old in "$cache"/rootfs-*; do
		[ "$old" = "$rootfs" ] || rm -rf "$old"
	done
fi
say "rootfs $rootfs"

work=$(mktemp -d "$cache/run.XXXXXX")
cleanup() {
	rc=$?
	ct_cleanup
	ct_discard "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ct_prepare "$rootfs" "$work"
echo firehose-e2e >"$work/root/etc/hostname"

# A self-signed certificate for the TLS step, valid for 127.0.0.1 (and for
# longer than the 14 days before expiry that make status degraded).
mkdir -p "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
	-subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" >"$work/openssl.log" 2>&1 ||
	die "openssl req failed: $(cat "$work/openssl.log")"

# --private-network: own netns with CAP_NET_ADMIN for nftables.
ct_start "$work" "fh-e2e-$$" --private-network \
	--bind-ro="$dist/repo:/srv/repo" \
	--bind-ro="$dist/e2e/upgrade:/srv/upgrade" \
	--bind-ro="$dist/e2e/rpm:/srv/rpm" \
	--bind-ro="$dist/stage/amd64/firehosectl:/srv/bin/firehosectl" \
	--bind-ro="$here:/srv/e2e" \
	--bind-ro="$work/tls:/srv/tls"
nspawn=$CT_PID
ct_wait "$work" "$nspawn"
leader=$CT_LEADER state=$CT_STATE
say "container booted (pid $leader, state $state)"

rc=0
nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8 \
	timeout 900 /bin/sh /srv/e2e/guest.sh || rc=$?
if [ -n "${FIREHOSE_E2E_HOLD:-}" ]; then
	say "holding the container for ${FIREHOSE_E2E_HOLD}s: nsenter -t $leader -a"
	sleep "$FIREHOSE_E2E_HOLD"
fi
# Its memory and CPU go to the cluster's two containers.
ct_stop "$nspawn"
say "single container: $([ $rc -eq 0 ] && echo PASS || echo "FAIL (guest exit $rc)") ($(($(date +%s) - t0))s)"

crc=0
[ "${FIREHOSE_E2E_CLUSTER:-1}" = 0 ] || "$here/cluster.sh" "$rootfs" || crc=$?
if [ $rc -eq 0 ] && [ $crc -eq 0 ]; then
	say "PASS (total $(($(date +%s) - t0))s)"
else
	say "FAIL (guest exit $rc, cluster exit $crc, total $(($(date +%s) - t0))s)"
	rc=1
fi
exit $rc
