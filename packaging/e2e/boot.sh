# Booted containers for the e2e scripts (sourced by run.sh and cluster.sh,
# whose steps.sh defines say and die): each one an overlay of the cached
# rootfs, booted with systemd-nspawn. ct_cleanup stops every container started and
# unmounts every overlay; call it from the EXIT trap, so a failure or an
# interrupt leaves nothing behind.

CT_N=0 # containers recorded, as ct_pid_<i> and ct_mnt_<i>

# ct_prepare ROOTFS DIR: DIR/root becomes a writable view of ROOTFS. Each
# container writes to its own overlay, so the cache stays pristine and two
# containers share nothing writable; a copy is the fallback where overlayfs
# is unavailable.
ct_prepare() {
	mkdir -p "$2/upper" "$2/ovl" "$2/root"
	CT_N=$((CT_N + 1))
	if mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/ovl" "$2/root" 2>/dev/null; then
		eval "ct_mnt_$CT_N=\$2/root"
	else
		say "overlayfs unavailable, copying the rootfs"
		cp -a "$1/." "$2/root/"
	fi
}

# ct_start DIR MACHINE NSPAWN-OPTION...: boots DIR/root (the container last
# prepared) in the background, its console in DIR/console.log; sets CT_PID
# to systemd-nspawn's pid.
# --register=no --keep-unit: there is no system bus on the host to register
# with.
ct_start() {
	_d=$1 _m=$2
	shift 2
	systemd-nspawn -b -D "$_d/root" -M "$_m" --register=no --keep-unit \
		--console=passive "$@" >"$_d/console.log" 2>&1 &
	CT_PID=$!
	eval "ct_pid_$CT_N=\$CT_PID"
}

# ct_wait DIR PID: waits (30 s) until the container of systemd-nspawn PID
# has booted; sets CT_LEADER to its init's pid (for nsenter -t) and
# CT_STATE to running or degraded.
ct_wait() {
	CT_LEADER=
	_w=0
	# The container's init is the child of systemd-nspawn named systemd.
	while [ -z "$CT_LEADER" ] && [ $_w -lt 100 ]; do
		kill -0 "$2" 2>/dev/null || {
			cat "$1/console.log"
			die "systemd-nspawn exited"
		}
		CT_LEADER=$(ps -o pid=,comm= --ppid "$2" | awk '$2 == "systemd" { print $1; exit }')
		[ -n "$CT_LEADER" ] || sleep 0.1
		_w=$((_w + 1))
	done
	[ -n "$CT_LEADER" ] || die "container init did not appear"
	CT_STATE=
	_w=0
	while [ $_w -lt 300 ]; do
		CT_STATE=$(nsenter -t "$CT_LEADER" -a systemctl is-system-running 2>/dev/null || true)
		case $CT_STATE in running | degraded) break ;; esac
		sleep 0.1
		_w=$((_w + 1))
	done
	case $CT_STATE in
	running) ;;
	degraded) nsenter -t "$CT_LEADER" -a systemctl --failed --no-legend || true ;;
	*)
		tail -20 "$1/console.log"
		die "container did not boot (state: ${CT_STATE:-none})"
		;;
	esac
}

# ct_stop PID: powers off the container of systemd-nspawn PID (SIGTERM asks
# its systemd to), killed after 10 s.
ct_stop() {
	kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null || true
	_s=0
	while kill -0 "$1" 2>/dev/null && [ $_s -lt 100 ]; do
		sleep 0.1
		_s=$((_s + 1))
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# ct_discard DIR: removes a run's files, or keeps them for debugging
# (FIREHOSE_E2E_KEEP=1).
ct_discard() {
	if [ "${FIREHOSE_E2E_KEEP:-}" = 1 ]; then
		say "kept $1"
	else
		rm -rf "$1"
	fi
}

# ct_cleanup: every container stopped (all asked at once, so their power-offs
# overlap), then every overlay unmounted.
ct_cleanup() {
	_c=1
	while [ $_c -le $CT_N ]; do
		eval "_p=\${ct_pid_$_c:-}"
		[ -z "$_p" ] || kill -TERM "$_p" 2>/dev/null || true
		_c=$((_c + 1))
	done
	_c=1
	while [ $_c -le $CT_N ]; do
		eval "_p=\${ct_pid_$_c:-} _mm=\${ct_mnt_$_c:-}"
		[ -z "$_p" ] || ct_stop "$_p"
		[ -z "$_mm" ] || umount "$_mm" || true
		eval "ct_pid_$_c= ct_mnt_$_c="
		_c=$((_c + 1))
	done
}
