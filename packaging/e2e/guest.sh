#!/bin/sh
# Runs inside the booted container (see run.sh): installs firehose from the
# flat apt repository at /srv/repo and drives it with clients nobody here
# wrote (mosquitto_sub/pub, paho-mqtt over websockets). Prints PASS or FAIL
# per step; a failed step does not stop the later ones, the exit status
# counts them. Every wait has a deadline.
set -u

# Enabled by the packages; the TLS ones only by the administrator, with TLS on.
SOCKETS="firehose-mqtt.socket firehose-ws.socket"
TLS_SOCKETS="firehose-mqtts.socket firehose-wss.socket"
CONF=/etc/firehose/firehose.toml
H=127.0.0.1
# The e2e publisher's password is "demo" (bcrypt, cost 10).
PUBHASH='$2a$10$PRqSBNs2MrITvXrliBd0xuFLGNI/yk2GgS6b7GWcXmKav.GwbrqlS'
T=/tmp/e2e
mkdir -p $T
export DEBIAN_FRONTEND=noninteractive

E2E=guest
. /srv/e2e/steps.sh
after_failed_step() {
	journalctl -u firehose.service --no-pager -n 15 -o short-monotonic | sed 's/^/    journal: /'
}
listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }
not_listening() { ! listening "$1"; }
active() { [ "$(systemctl is-active "$1")" = active ]; }
inactive() { ! systemctl --quiet is-active "$1"; }
main_pid() { systemctl show -p MainPID --value firehose.service; }
pid_changed() { p=$(main_pid) && [ "$p" != 0 ] && [ "$p" != "$1" ]; }
socket_since() { systemctl show -p ActiveEnterTimestampMonotonic --value $SOCKETS | tr '\n' ' '; }
# Client ends of the established connections to a port (client port numbers).
clients_of() { ss -Htn state established "dport = :$1" | awk '{print $3}' | sort; }
has_clients() { [ -n "$(clients_of "$1")" ]; }
has_line() { grep -qxF "$2" "$1"; }
pub() { mosquitto_pub -h $H -p 1883 -u e2e -P demo -q 1 "$@"; }
# delivered TOPIC PAYLOAD: publish until the TCP subscriber has it; after a
# restart the subscriber reconnects on its own schedule and a QoS 0
# subscription misses what was published before.
delivered() { pub -t "$1" -m "$2" && has_line $T/sub-tcp.out "$1 $2"; }
# sub_alive: the TCP subscriber is still running. mosquitto_sub reconnects by
# itself after a lost connection, but exits on a protocol error.
sub_alive() { kill -0 $SUB_TCP 2>/dev/null; }
why_sub() { sub_alive || log "mosquitto_sub exited: $(tr '\n' ' ' <$T/sub-tcp.err)"; }
# fresh_sub: replace a TCP subscriber that exited, so one step's failure
# does not hide what the next step checks.
fresh_sub() {
	sub_alive && return 0
	log "mosquitto_sub had exited: $(tr '\n' ' ' <$T/sub-tcp.err); starting another"
	mosquitto_sub -h $H -p 1883 -i e2e-sub-tcp -t 'e2e/#' -v >>$T/sub-tcp.out 2>$T/sub-tcp.err &
	SUB_TCP=$!
	within 10 'delivered e2e/fresh $SUB_TCP'
}
ws() { python3 /srv/e2e/ws_client.py "$@"; }

add_publisher() {
	cat >>$CONF <<EOF

# Added by the end-to-end test.
[[publisher]]
username = "e2e"
password_hash = "$PUBHASH"
topics = ["e2e/#"]
EOF
}

# --- 1 ---------------------------------------------------------------------
step 1 "apt install from the flat repository; sockets active; sandbox score"
# The cached rootfs points apt at a mirror this network namespace cannot reach.
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:/srv/repo ./" >/etc/apt/sources.list.d/firehose.list
check "apt-get update" 'apt-get update -q >$T/apt.log 2>&1'
check "apt-get install firehose" 'apt-get install -y -q firehose >>$T/apt.log 2>&1'
grep -v 'Reading database' $T/apt.log | tail -n 12 | sed 's/^/    apt: /'
V1=$(dpkg-query -W -f '${Version}' firehose 2>/dev/null)
log "installed firehose $V1; firehosectl version: $(firehosectl version 2>&1)"
for s in $SOCKETS; do check "$s active" "active $s"; done
for s in $TLS_SOCKETS; do check "$s not enabled (TLS is off)" "! systemctl --quiet is-enabled $s && inactive $s"; done
check_within 15 "firehose.service started by postinst" 'active firehose.service'
check "nothing holds 8883 or 443 open with TLS off" 'not_listening 8883 && not_listening 443'
check "firehose account exists" 'getent passwd firehose >/dev/null'
check "config is root:firehose 0640" '[ "$(stat -c %U:%G:%a $CONF)" = root:firehose:640 ]'
check "daemon runs as firehose" '[ "$(ps -o user= -p $(main_pid))" = firehose ]'
systemd-analyze security firehose.service >$T/security.txt 2>&1
score=$(sed -n 's/.*Overall exposure level for firehose.service: \([0-9.]*\).*/\1/p' $T/security.txt)
grep '✗' $T/security.txt | sed 's/^/    /'
log "systemd-analyze security firehose.service: $(tail -n 1 $T/security.txt | sed 's/.*: //')"
check "exposure score ${score:-?} <= 2.0" 'awk -v s="${score:-99}" "BEGIN { exit !(s <= 2.0) }"'
end_step

# --- 2 ---------------------------------------------------------------------
step 2 "socket activation; reload adds a publisher without dropping clients; TCP and websockets"
systemctl stop firehose.service 2>/dev/null
check_within 15 "service stopped" 'inactive firehose.service'
check "sockets still listening on 1883 and 80" 'listening 1883 && listening 80'
mosquitto_sub -h $H -p 1883 -i e2e-sub-tcp -t 'e2e/#' -v >$T/sub-tcp.out 2>$T/sub-tcp.err &
SUB_TCP=$!
check_within 20 "a subscriber on :1883 starts the service" 'active firehose.service'
check_within 10 "tcp subscriber connected" 'has_clients 1883'
ws sub e2e-sub-ws 'e2e/#' >$T/sub-ws.out 2>$T/sub-ws.err &
SUB_WS=$!
check_within 10 "websocket subscriber subscribed" 'grep -q "^subscribed" $T/sub-ws.out'
check "publisher unknown before the reload" '! pub -t e2e/early -m early 2>$T/early.err'
log "unknown publisher: $(tr '\n' ' ' <$T/early.err)"
before=$(clients_of 1883; clients_of 80)
add_publisher
check "systemctl reload firehose" 'systemctl reload firehose'
after=$(clients_of 1883; clients_of 80)
check "no client dropped by the reload ($(echo $before))" '[ "$before" = "$after" ]'
check "mosquitto_pub over TCP" 'pub -t e2e/tcp -m hello-tcp'
check_within 5 "tcp subscriber got it" 'has_line $T/sub-tcp.out "e2e/tcp hello-tcp"'
check_within 5 "websocket subscriber got it" 'has_line $T/sub-ws.out "e2e/tcp hello-tcp"'
check "paho publish over websockets on :80" 'ws pub e2e-pub-ws e2e/ws hello-ws e2e demo'
check_within 5 "tcp subscriber got the websocket message" 'has_line $T/sub-tcp.out "e2e/ws hello-ws"'
check_within 5 "websocket subscriber got it" 'has_line $T/sub-ws.out "e2e/ws hello-ws"'
end_step

# --- 3 ---------------------------------------------------------------------
step 3 "firehosectl status; listeners from systemd; nftables table"
firehosectl status >$T/status.txt 2>&1
rc=$?
sed 's/^/    status: /' $T/status.txt
check "firehosectl status exits 0 (got $rc)" '[ $rc -eq 0 ]'
firehosectl status --json >$T/status.json 2>&1
check "every listener came from systemd" 'python3 /srv/e2e/listeners.py $T/status.json'
nft list table inet firehose >$T/nft.txt 2>&1
rc=$?
sed 's/^/    nft: /' $T/nft.txt
check "nft list table inet firehose" '[ $rc -eq 0 ]'
check "the table names the broker's ports" 'grep -q 1883 $T/nft.txt'
# systemd moves WatchdogTimestamp on each WATCHDOG=1; without pings it would
# kill the daemon after WatchdogSec (30 s), longer than most steps here last.
wd=$(systemctl show -p WatchdogTimestampMonotonic --value firehose.service)
check_within 20 "the daemon pings the watchdog" '[ "$(systemctl show -p WatchdogTimestampMonotonic --value firehose.service)" != "$wd" ]'
end_step

# --- 4 ---------------------------------------------------------------------
step 4 "a broken config: reload fails, the daemon keeps serving, status says why"
cp $CONF $T/good.toml
pid=$(main_pid)
printf '\n[broker]\nmax_clients = "many"\n' >>$CONF
systemctl reload firehose >$T/reload.txt 2>&1
rc=$?
sed 's/^/    reload: /' $T/reload.txt
check "systemctl reload firehose fails (exit $rc)" '[ $rc -ne 0 ]'
check "the same daemon is still running" '[ "$(main_pid)" = "$pid" ] && active firehose.service'
check "still serving" 'pub -t e2e/after-bad -m still-here'
check_within 5 "subscriber got it" 'has_line $T/sub-tcp.out "e2e/after-bad still-here"'
firehosectl status >$T/status-bad.txt 2>&1
rc=$?
sed 's/^/    status: /' $T/status-bad.txt
check "status exits 1, degraded (got $rc)" '[ $rc -eq 1 ]'
check "status names the file" 'grep -q firehose.toml $T/status-bad.txt'
cp $T/good.toml $CONF
check "reload of the fixed config" 'systemctl reload firehose'
check "status back to 0" 'firehosectl status >/dev/null'
end_step

# --- 5 ---------------------------------------------------------------------
step 5 "systemctl restart while a client connects in a loop: nothing refused"
: >$T/loop.log
rm -f $T/loop.stop
(
	i=0
	while [ ! -e $T/loop.stop ] && [ $i -lt 1000 ]; do
		if pub -t e2e/loop -m "$i" 2>>$T/loop.log; then echo ok >>$T/loop.log; else echo "fail $i" >>$T/loop.log; fi
		i=$((i + 1))
	done
) &
LOOP=$!
oks() { grep -c '^ok' $T/loop.log; }
check_within 10 "loop running" '[ $(oks) -ge 5 ]'
pid=$(main_pid)
# A key dropped where the docs say reaches the restarted daemon as a credential.
printf 'not a real key\n' >/etc/firehose/credentials/gerrit/key
chmod 0600 /etc/firehose/credentials/gerrit/key
check "systemctl restart firehose" 'systemctl restart firehose'
check "a new daemon" 'pid_changed $pid'
check "credentials/gerrit/key reaches the daemon as gerrit_key" '[ -f /run/credentials/firehose.service/gerrit_key ] && [ "$(stat -c %a /etc/firehose/credentials/gerrit)" = 700 ]'
n=$(oks)
check_within 10 "the loop carried on after the restart" '[ $(oks) -ge $((n + 5)) ]'
touch $T/loop.stop
wait $LOOP
log "connections: $(oks) ok, $(grep -c '^fail' $T/loop.log) failed"
grep -v '^ok' $T/loop.log | sort | uniq -c | sed 's/^/    /' | head -n 10
check "no connection refused" '! grep -qi refused $T/loop.log'
check_within 15 "the subscriber reconnected by itself" 'sub_alive && delivered e2e/after-restart yes'
why_sub
end_step

# --- 6 ---------------------------------------------------------------------
step 6 "kill -9: systemd restarts the daemon, the sockets never close"
fresh_sub
since=$(socket_since)
pid=$(main_pid)
restarts=$(systemctl show -p NRestarts --value firehose.service)
kill -9 "$pid"
check "a publish right after the kill waits and succeeds" 'pub -t e2e/after-kill -m back'
check_within 20 "restarted with a new pid" 'pid_changed $pid && active firehose.service'
check "NRestarts went up" '[ $(systemctl show -p NRestarts --value firehose.service) -gt $restarts ]'
check "sockets never re-opened" '[ "$(socket_since)" = "$since" ]'
check_within 15 "the subscriber reconnected by itself" 'sub_alive && delivered e2e/after-kill again'
why_sub
end_step

# --- 7 ---------------------------------------------------------------------
step 7 "TLS on: enable the TLS sockets, served from systemd; TLS off again: status says to disable them"
fresh_sub
cp $CONF $T/notls.toml
install -d -m 0750 -o root -g firehose /etc/firehose/tls
install -m 0644 /srv/tls/cert.pem /etc/firehose/tls/cert.pem
install -m 0640 -o root -g firehose /srv/tls/key.pem /etc/firehose/tls/key.pem
sed -i 's|^mode = "off"|mode = "files"\ncert_file = "/etc/firehose/tls/cert.pem"\nkey_file = "/etc/firehose/tls/key.pem"|' $CONF
check "the TLS config passes check" 'firehosectl check --config $CONF >/dev/null'
# systemd refuses to start a socket unit while its service is active.
check "systemctl stop firehose" 'systemctl stop firehose'
check "systemctl enable --now the TLS sockets" "systemctl enable --now $TLS_SOCKETS"
check "systemctl start firehose" 'systemctl start firehose'
check_within 15 "service active" 'active firehose.service'
check "8883 and 443 listening" 'listening 8883 && listening 443'
check_within 10 "status 0" 'firehosectl status >/dev/null'
firehosectl status --json >$T/status-tls.json
check "all four listeners from systemd" 'python3 /srv/e2e/listeners.py $T/status-tls.json && grep -q "\"mqtts\"" $T/status-tls.json && grep -q "\"wss\"" $T/status-tls.json'
mosquitto_sub -h $H -p 8883 --cafile /srv/tls/cert.pem -t 'e2e/#' -v -C 1 -W 15 >$T/sub-tls.out 2>&1 &
SUB=$!
check_within 10 "a subscriber over TLS on 8883" 'has_clients 8883'
check "publish" 'pub -t e2e/tls -m secure'
wait $SUB
check "the TLS subscriber got it" 'has_line $T/sub-tls.out "e2e/tls secure"'
# TLS off again, the sockets left enabled: the ports would hang unanswered.
cp $T/notls.toml $CONF
check "restart with TLS off" 'systemctl restart firehose'
check_within 10 "status exits 1 (degraded)" '! firehosectl status >$T/status-notls.txt 2>&1'
sed 's/^/    status: /' $T/status-notls.txt
check "status says how to stop the TLS sockets" 'grep -q "systemctl disable --now firehose-mqtts.socket" $T/status-notls.txt && grep -q "systemctl disable --now firehose-wss.socket" $T/status-notls.txt'
check "systemctl disable --now the TLS sockets" "systemctl disable --now $TLS_SOCKETS"
check "restart" 'systemctl restart firehose'
check_within 10 "8883 and 443 closed" 'not_listening 8883 && not_listening 443'
check_within 10 "status 0" 'firehosectl status >/dev/null'
end_step

# --- 8 ---------------------------------------------------------------------
step 8 "upgrade over a broken config, upgrade, remove, purge"
echo "deb [trusted=yes] file:/srv/upgrade ./" >/etc/apt/sources.list.d/firehose-upgrade.list
apt-get update -q >>$T/apt.log 2>&1
V2=$(apt-cache madison firehose | awk '{print $3}' | sort -V | sed -n 2p)
V3=$(apt-cache madison firehose | awk '{print $3}' | sort -V | sed -n 3p)
log "versions: $V1 -> $V2 -> $V3"
fresh_sub
since=$(socket_since)
pid=$(main_pid)
cp $CONF $T/good.toml
printf '\n[broker]\nmax_clients = "many"\n' >>$CONF
apt-get install -y -q -o Dpkg::Options::=--force-confold firehose="$V2" >$T/apt-broken.log 2>&1
rc=$?
grep -i -e firehose: -e error $T/apt-broken.log | sed 's/^/    apt: /'
check "upgrade over a broken config completes (exit $rc)" '[ $rc -eq 0 ]'
check "package fully installed" '[ "$(dpkg-query -W -f "\${Status} \${Version}" firehose)" = "install ok installed $V2" ]'
check "the error was printed" 'grep -q "NOT restarted" $T/apt-broken.log'
check "old daemon still running" '[ "$(main_pid)" = "$pid" ] && active firehose.service'
check "still serving" 'pub -t e2e/broken-upgrade -m served'
cp $T/good.toml $CONF
apt-get install -y -q -o Dpkg::Options::=--force-confold firehose="$V3" >$T/apt-up.log 2>&1
rc=$?
check "upgrade to $V3 (exit $rc)" '[ $rc -eq 0 ]'
check_within 15 "daemon restarted" 'pid_changed $pid'
check "sockets never re-opened" '[ "$(socket_since)" = "$since" ]'
check_within 10 "status 0 after the upgrade" 'firehosectl status'
check_within 10 "publish after the upgrade" 'pub -t e2e/upgraded -m "$V3"'
check_within 15 "the subscriber reconnected by itself" 'sub_alive && delivered e2e/upgraded "$V3"'
why_sub
kill $SUB_TCP $SUB_WS 2>/dev/null
check "apt-get remove" 'apt-get remove -y -q firehose >$T/apt-remove.log 2>&1'
for p in 1883 80 8883 443; do check_within 10 "port $p closed" "not_listening $p"; done
check "connection refused now" 'mosquitto_pub -h $H -p 1883 -t x -m y 2>&1 | grep -qi refused'
check "nftables table gone" '! nft list table inet firehose >/dev/null 2>&1'
check "units inactive" '! systemctl --quiet is-active firehose.service $SOCKETS'
check "apt-get purge" 'apt-get purge -y -q firehose >$T/apt-purge.log 2>&1'
check "nothing left in /etc/firehose" '[ ! -e /etc/firehose ]'
check "nothing left in /var/lib/firehose" '[ ! -e /var/lib/firehose ]'
check "package gone from dpkg" '! dpkg-query -W -f "\${Status}" firehose 2>/dev/null | grep -q installed'
end_step

# --- 9 ---------------------------------------------------------------------
step 9 "firehosectl install on a host where only the binary was copied in"
cp /srv/bin/firehosectl /root/firehosectl
/root/firehosectl install >$T/install.txt 2>&1
rc=$?
sed 's/^/    install: /' $T/install.txt
check "firehosectl install (exit $rc)" '[ $rc -eq 0 ]'
for s in $SOCKETS; do check "$s active" "active $s"; done
check_within 15 "service active" 'active firehose.service'
check "units run /usr/local/bin/firehosectl" 'grep -q "^ExecStart=/usr/local/bin/firehosectl " /etc/systemd/system/firehose.service'
check "config written" '[ -f $CONF ]'
check_within 10 "status 0" '/usr/local/bin/firehosectl status'
add_publisher
check "reload" 'systemctl reload firehose'
mosquitto_sub -h $H -p 1883 -t 'e2e/#' -v -C 1 -W 10 >$T/sub-installed.out 2>&1 &
SUB=$!
check_within 10 "subscriber connected" 'has_clients 1883'
check "publish" 'pub -t e2e/installed -m yes'
wait $SUB
check "subscriber got it" 'has_line $T/sub-installed.out "e2e/installed yes"'
check "nftables table present" 'nft list table inet firehose >/dev/null'
/usr/local/bin/firehosectl uninstall --purge >$T/uninstall.txt 2>&1
rc=$?
sed 's/^/    uninstall: /' $T/uninstall.txt
check "firehosectl uninstall --purge (exit $rc)" '[ $rc -eq 0 ]'
for p in 1883 80 8883 443; do check_within 10 "port $p closed" "not_listening $p"; done
check "nftables table gone" '! nft list table inet firehose >/dev/null 2>&1'
check "no units left" '! ls /etc/systemd/system/firehose* >/dev/null 2>&1'
check "nothing left in /etc/firehose, /var/lib/firehose" '[ ! -e /etc/firehose ] && [ ! -e /var/lib/firehose ]'
end_step

# --- 10 --------------------------------------------------------------------
step 10 "the rpm's scriptlets under systemd (Debian's rpm, --nodeps)"
# Starts from no account, so %pre has to create it.
userdel firehose 2>/dev/null
R1=$(ls /srv/rpm/firehose-*.x86_64.rpm | sort -V | head -n 1)
R2=$(ls /srv/rpm/firehose-*.x86_64.rpm | sort -V | tail -n 1)
RPM="rpm --nodeps"
# Debian's rpm refuses to touch the system without this flag.
rpm --help 2>/dev/null | grep -q force-debian && RPM="$RPM --force-debian"
log "packages: ${R1##*/} -> ${R2##*/}"
check "rpm -i" '$RPM -i $R1 >$T/rpm-i.log 2>&1'
sed 's/^/    rpm: /' $T/rpm-i.log
check "account created by %pre" 'getent passwd firehose >/dev/null'
check "config is root:firehose 0640" '[ "$(stat -c %U:%G:%a $CONF)" = root:firehose:640 ]'
for s in $SOCKETS; do check "$s enabled and active" "active $s && systemctl --quiet is-enabled $s"; done
check_within 15 "service started by %post" 'active firehose.service'
check "status 0" 'firehosectl status >/dev/null'
check "nftables table present" 'nft list table inet firehose >/dev/null'
pid=$(main_pid)
since=$(socket_since)
check "rpm -U" '$RPM -U $R2 >$T/rpm-u.log 2>&1'
sed 's/^/    rpm: /' $T/rpm-u.log
check_within 15 "daemon restarted by %postun" 'pid_changed $pid && active firehose.service'
check "sockets never re-opened" '[ "$(socket_since)" = "$since" ]'
check "rpm -e" '$RPM -e firehose >$T/rpm-e.log 2>&1'
sed 's/^/    rpm: /' $T/rpm-e.log
for p in 1883 80 8883 443; do check_within 10 "port $p closed" "not_listening $p"; done
check "nftables table gone" '! nft list table inet firehose >/dev/null 2>&1'
check "units gone" '! systemctl cat firehose.service >/dev/null 2>&1'
log "left behind (RPM has no purge): $(find /etc/firehose /var/lib/firehose 2>/dev/null | tr '\n' ' ')"
end_step

echo "== guest done in $(($(date +%s) - t0))s: $failed failed step(s)"
[ $failed -eq 0 ]
