# Steps and assertions for the e2e scripts: sourced by run.sh and
# cluster.sh on the host and by guest.sh in the container. The sourcing
# script sets E2E (its name in messages) and, for steps, defines
# after_failed_step (what to print when a step fails: the daemon's log).
# A failed step does not stop the later ones; $failed counts them.

t0=$(date +%s)
failed=0

say() { echo "$E2E[$(($(date +%s) - t0))s]: $*"; }
die() {
	say "FAIL: $*"
	exit 1
}

log() { echo "    $*"; }
# step NAME DESCRIPTION: starts a step; end_step prints PASS or FAIL.
step() {
	STEP=$1
	echo "== $E2E step $STEP: $2 [$(($(date +%s) - t0))s]"
	step_ok=1
}
# check DESCRIPTION CODE: one assertion, CODE evaluated in this shell (so it
# sees its variables and functions); the step fails if any assertion does.
check() {
	if eval "$2"; then
		log "ok: $1"
	else
		log "NOT OK: $1"
		step_ok=0
	fi
}
# within SECONDS CODE: evaluates CODE every 0.1 s until it succeeds, for at
# most SECONDS by the clock (a try may take a while on a busy machine,
# above all one that runs commands in a container).
within() {
	_end=$(($(date +%s) + $1))
	while :; do
		eval "$2" >/dev/null 2>&1 && return 0
		[ "$(date +%s)" -lt $_end ] || return 1
		sleep 0.1
	done
}
# check_within SECONDS DESCRIPTION CODE: an assertion that may take a while.
check_within() {
	_t=$(date +%s)
	if within "$1" "$3"; then
		log "ok: $2 ($(($(date +%s) - _t)) s)"
	else
		log "NOT OK: $2 (after $1 s)"
		step_ok=0
	fi
}
end_step() {
	if [ $step_ok -eq 1 ]; then
		echo "PASS $E2E step $STEP"
	else
		echo "FAIL $E2E step $STEP"
		failed=$((failed + 1))
		after_failed_step
	fi
}
