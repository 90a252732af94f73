#!/bin/sh
# The e2e's cluster part, run by run.sh after the single container (or alone:
# cluster.sh ROOTFS, the cached rootfs run.sh prints). Boots two containers
# from the cached rootfs, each on its own overlay, linked by a network only
# they share; cluster-node.sh installs firehose from dist/repo in each and
# starts it as node fh1 / fh2 of a two-node cluster (replicas = 2) with its
# firewall on. Then real clients check, from this host through nsenter:
# status on both nodes, a message from fh1's publisher reaching a subscriber
# on fh2 once, the route port open to the peer's address alone, quorum lost
# on fh2 while fh1 is stopped and back when it starts. Prints PASS or FAIL
# per step like guest.sh; every wait has a deadline.
#
# The link: systemd-nspawn --network-zone=ZONE puts each container's host0
# on a bridge vz-ZONE, which systemd-nspawn creates on this host (the
# cleanup removes it, should systemd-nspawn leave it behind). The bridge is
# brought up with no address (IPv6 off, so not even a link-local one): the
# host takes no part. The guests give themselves 10.99.0.1 and .2, which
# exist only inside their network namespaces.
#
#   FIREHOSE_E2E_KEEP=1 keep the containers' files after the run
#   FIREHOSE_E2E_HOLD=N keep the containers up N seconds after the checks
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dist=$top/dist
rootfs=${1:?usage: cluster.sh ROOTFS (the cached rootfs; see run.sh)}
NET=10.99.0
ROUTE=6222

. "$here/boot.sh"

E2E=cluster
. "$here/steps.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root (it boots containers)"
[ -e "$rootfs/.complete" ] || die "no cached rootfs at $rootfs (run.sh builds it)"
[ -f "$dist/repo/Packages" ] || die "no apt repository in $dist/repo (run: make repo)"
command -v ip >/dev/null || die "ip not found (apt-get install iproute2)"

# Unique per run, and short: the bridge's name is vz-ZONE, the host ends of
# the links vb-<machine>, each at most 15 characters.
zone=fhc$$
bridge=vz-$zone
work=$(mktemp -d "$(dirname "$rootfs")/cluster.XXXXXX")
cleanup() {
	rc=$?
	ct_cleanup
	if ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge" 2>/dev/null || say "could not remove the bridge $bridge"
	fi
	ct_discard "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in 1 2; do
	ct_prepare "$rootfs" "$work/fh$n"
	echo "fh$n" >"$work/fh$n/root/etc/hostname"
	ct_start "$work/fh$n" "fhc$$-$n" --network-zone="$zone" \
		--bind-ro="$dist/repo:/srv/repo" \
		--bind-ro="$here:/srv/e2e"
	eval "nspawn_$n=\$CT_PID"
	[ $n = 1 ] || continue
	# The first container creates the bridge; the second only joins it.
	# systemd-nspawn leaves it down (on a host with systemd-networkd, its
	# 80-container-vz.network would bring it up, with an address and DHCP):
	# up, with no address, it only links the two.
	i=0
	while ! ip link show "$bridge" >/dev/null 2>&1; do
		kill -0 "$CT_PID" 2>/dev/null || die "systemd-nspawn exited: $(tail -n 5 "$work/fh1/console.log")"
		[ $i -lt 300 ] || die "no bridge $bridge after 30 s"
		sleep 0.1
		i=$((i + 1))
	done
	v6=/proc/sys/net/ipv6/conf/$bridge/disable_ipv6
	[ ! -e "$v6" ] || echo 1 >"$v6"
	ip link set "$bridge" up
done
for n in 1 2; do
	eval "ct_wait \"\$work/fh\$n\" \"\$nspawn_$n\""
	eval "leader_$n=\$CT_LEADER"
	say "fh$n booted (pid $CT_LEADER, state $CT_STATE)"
done

# on N CMD...: runs CMD in node fhN's container.
on() {
	eval "_l=\$leader_$1"
	shift
	nsenter -t "$_l" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8 "$@"
}

# Both nodes are set up at once (apt, config, start): cluster-node.sh.
for n in 1 2; do
	on $n timeout 300 /bin/sh /srv/e2e/cluster-node.sh $n >"$work/setup-$n.log" 2>&1 &
	eval "setup_$n=\$!"
done
for n in 1 2; do
	rc=0
	eval "wait \$setup_$n" || rc=$?
	sed "s/^/    fh$n setup: /" "$work/setup-$n.log"
	[ $rc -eq 0 ] || die "setting up fh$n failed (exit $rc)"
done
say "firehose installed and started on both nodes"

after_failed_step() {
	for n in 1 2; do
		on $n journalctl -u firehose.service --no-pager -n 15 -o short-monotonic | sed "s/^/    fh$n journal: /"
	done
}

# status N: node fhN's `firehosectl status` into $work/status-N.txt; its
# exit status in $status_rc.
status() {
	status_rc=0
	on "$1" firehosectl status >"$work/status-$1.txt" 2>&1 || status_rc=$?
}
show_status() {
	grep -E '^(state|  reason|cluster|  (node|meta leader|stream leader|peer|replica|fan-out lag|refused|last error)):' \
		"$work/status-$1.txt" | sed "s/^/    fh$1 status: /"
}
# quorate N PEER: fhN's status exits 0 and shows the cluster with its quorum
# and the peer connected.
quorate() {
	status "$1"
	[ $status_rc -eq 0 ] &&
		grep -Eq '^cluster: +quorum$' "$work/status-$1.txt" &&
		grep -Eq "^  peer: +$2 .* connected\$" "$work/status-$1.txt"
}
# no_quorum N PEER: fhN's status exits 1, degraded, with the README's
# "cluster: NO QUORUM", a reason and the peer not connected.
no_quorum() {
	status "$1"
	[ $status_rc -eq 1 ] &&
		grep -Eq '^state: +degraded$' "$work/status-$1.txt" &&
		grep -Eq '^  reason: +cluster: .*no quorum.*publishes are refused' "$work/status-$1.txt" &&
		grep -Eq '^cluster: +NO QUORUM' "$work/status-$1.txt" &&
		grep -Eq "^  peer: +$2 .*NOT CONNECTED" "$work/status-$1.txt"
}
pub() { on 1 timeout 60 mosquitto_pub -h 127.0.0.1 -p 1883 -u e2e -P demo -q 1 "$@"; }
# The subscriber on fh2 writes to its root's /root/sub.out (read here through
# the overlay).
SUBOUT=$work/fh2/root/root/sub.out
received() { grep -cxF "$1" "$SUBOUT" 2>/dev/null || true; }
has_clients() { [ -n "$(on "$1" ss -Htn state established "dport = :1883")" ]; }

# --- 1 ---------------------------------------------------------------------
step 1 "both nodes report the cluster: quorum, the peer connected"
check "the host's bridge $bridge has no address" '[ -z "$(ip -o addr show dev "$bridge")" ]'
check_within 120 "fh1: status 0, quorum, fh2 connected" 'quorate 1 fh2'
show_status 1
check_within 120 "fh2: status 0, quorum, fh1 connected" 'quorate 2 fh1'
show_status 2
end_step
# Every later step needs the cluster.
[ $failed -eq 0 ] || die "no cluster formed; the later steps cannot run"

# --- 2 ---------------------------------------------------------------------
step 2 "published on fh1, received on fh2 exactly once"
# A transient unit: stopped with the container, whatever happens here.
check "a subscriber on fh2" "on 2 systemd-run -q --unit=e2e-sub -p StandardOutput=file:/root/sub.out \
	-p StandardError=file:/root/sub.err mosquitto_sub -h 127.0.0.1 -p 1883 -i e2e-sub-fh2 -t 'e2e/#' -v"
check_within 30 "it is connected" 'has_clients 2'
check "mosquitto_pub on fh1 (QoS 1: acknowledged once journaled)" 'pub -t e2e/cluster -m from-fh1'
check_within 60 "the subscriber on fh2 got it" '[ "$(received "e2e/cluster from-fh1")" -ge 1 ]'
# Delivered in the stream's order: once a later message is there, a second
# copy of the first would have arrived before it.
check "a second message on fh1" 'pub -t e2e/cluster -m marker-1'
check_within 60 "the subscriber got that too" '[ "$(received "e2e/cluster marker-1")" -ge 1 ]'
check "the first arrived exactly once ($(received "e2e/cluster from-fh1") times)" '[ "$(received "e2e/cluster from-fh1")" = 1 ]'
end_step

# --- 3 ---------------------------------------------------------------------
step 3 "fh2's firewall: the route port open to fh1's address alone"
on 2 nft list table inet firehose >"$work/nft-2.txt" 2>&1 || true
grep -F "$ROUTE" "$work/nft-2.txt" | sed 's/^[[:space:]]*/    fh2 nft: /'
check "the rule: ip saddr $NET.1 tcp dport $ROUTE accept" 'grep -q "ip saddr $NET.1 tcp dport $ROUTE accept" "$work/nft-2.txt"'
check "no other rule names the route port" '[ "$(grep -c "$ROUTE" "$work/nft-2.txt")" = 1 ]'
check "the chain drops the rest" 'grep -q "policy drop" "$work/nft-2.txt"'
# From fh1's container: a connection from fh1's address gets through, one
# from another address of the same container (added for this) is dropped.
connect_from() {
	on 1 python3 -c 'import socket, sys
socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5, source_address=(sys.argv[1], 0)).close()' "$1" "$NET.2" $ROUTE
}
check "fh1 ($NET.1) reaches fh2's route port" "connect_from $NET.1"
check "a second address on fh1, $NET.3" 'on 1 ip addr add "$NET.3/24" dev host0'
check "from $NET.3 (not a peer) it is dropped: the connection times out" \
	"! connect_from $NET.3 2>$work/probe.err && grep -q 'timed out' $work/probe.err"
log "from $NET.3: $(tail -n 1 "$work/probe.err")"
on 1 ip addr del "$NET.3/24" dev host0 || true
end_step

# --- 4 ---------------------------------------------------------------------
step 4 "fh1 stopped: fh2 has no quorum, degraded, as the README says"
# (systemctl warns that the socket units could start it again: nothing
# connects to fh1's broker ports meanwhile.)
check "systemctl stop firehose on fh1" 'on 1 systemctl stop firehose.service 2>/dev/null'
check_within 60 "fh2: status exits 1, degraded, NO QUORUM, fh1 not connected" 'no_quorum 2 fh1'
show_status 2
# MQTT 3.1.1 has no negative PUBACK: the publisher is disconnected (after
# the node's 12 s of retries).
refused() {
	rc=0
	on 2 timeout 60 mosquitto_pub -h 127.0.0.1 -u e2e -P demo -q 1 -t e2e/cluster -m refused 2>"$work/refused.err" || rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qi "connection was lost" "$work/refused.err"
}
check "a QoS 1 publish on fh2 is refused: disconnected (not timed out)" refused
log "mosquitto_pub: $(tr '\n' ' ' <"$work/refused.err")"
check "fh2's subscriber stays connected" 'has_clients 2'
end_step

# --- 5 ---------------------------------------------------------------------
step 5 "fh1 started again: quorum back on both, a new message flows"
check "systemctl start firehose on fh1" 'on 1 systemctl start firehose.service'
check_within 120 "fh1: status 0, quorum, fh2 connected" 'quorate 1 fh2'
check_within 120 "fh2: status 0, quorum, fh1 connected" 'quorate 2 fh1'
show_status 2
check "mosquitto_pub on fh1" 'pub -t e2e/cluster -m after-restart'
check_within 60 "the subscriber on fh2 got it" '[ "$(received "e2e/cluster after-restart")" -ge 1 ]'
check "a second message on fh1" 'pub -t e2e/cluster -m marker-2'
check_within 60 "the subscriber got that too" '[ "$(received "e2e/cluster marker-2")" -ge 1 ]'
check "the refused message was delivered to no one" '[ "$(received "e2e/cluster refused")" = 0 ]'
check "every message exactly once, in order" '[ "$(tr "\n" " " <"$SUBOUT")" = "e2e/cluster from-fh1 e2e/cluster marker-1 e2e/cluster after-restart e2e/cluster marker-2 " ]'
sed 's/^/    fh2 subscriber: /' "$SUBOUT"
end_step

if [ -n "${FIREHOSE_E2E_HOLD:-}" ]; then
	say "holding the containers for ${FIREHOSE_E2E_HOLD}s: nsenter -t $leader_1 -a, nsenter -t $leader_2 -a"
	sleep "$FIREHOSE_E2E_HOLD"
fi
if [ $failed -eq 0 ]; then
	say "PASS (total $(($(date +%s) - t0))s)"
else
	say "FAIL: $failed failed step(s) (total $(($(date +%s) - t0))s)"
fi
[ $failed -eq 0 ]
