#!/bin/sh
# Runs inside each of cluster.sh's two containers: cluster-node.sh N makes
# the container node fhN at 10.99.0.N on the link the two share, installs
# firehose from the flat apt repository at /srv/repo, configures it as one
# node of a two-node cluster (the package's config plus a publisher and
# [cluster]; its [firewall] is on) and starts it under systemd.
set -eu
N=$1
NET=10.99.0
CONF=/etc/firehose/firehose.toml
# The e2e publisher's password is "demo" (bcrypt, cost 10), as in guest.sh.
PUBHASH='$2a$10$PRqSBNs2MrITvXrliBd0xuFLGNI/yk2GgS6b7GWcXmKav.GwbrqlS'
export DEBIAN_FRONTEND=noninteractive

# host0 is this container's end of the link (systemd-nspawn --network-zone).
ip addr add "$NET.$N/24" dev host0
ip link set host0 up

rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:/srv/repo ./" >/etc/apt/sources.list.d/firehose.list
apt-get update -q >/dev/null
# Installed without starting anything (policy-rc.d 101, as in an image
# build): the node's first start is as a cluster member, on an empty state
# directory (the README does not cover turning a standalone journal into a
# clustered one).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get install -y -q firehose >/dev/null
rm /usr/sbin/policy-rc.d
echo "installed firehose $(dpkg-query -W -f '${Version}' firehose)"

cat >>$CONF <<EOF

# Added by the end-to-end test (cluster.sh).
[[publisher]]
username = "e2e"
password_hash = "$PUBHASH"
topics = ["e2e/#"]

[cluster]
name = "fh$N"
listen = "$NET.$N:6222"
peers = ["$NET.1:6222", "$NET.2:6222"]
replicas = 2
EOF
firehosectl check --config $CONF
# Pulls in the socket units (Requires=).
systemctl start firehose.service
echo "firehose.service: $(systemctl is-active firehose.service)"
