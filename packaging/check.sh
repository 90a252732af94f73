#!/bin/sh
# Lints the packages in DIR and shows what the rpm holds and runs. Fails on
# any lintian or rpmlint error; warnings are either fixed, overridden with a
# reason (deb/lintian-overrides, rpm/rpmlintrc) or explained in README.md ("Packages and systemd").
set -eu
dir=${1:?usage: check.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
rc=0
for deb in "$dir"/firehose_*.deb; do
	echo "== lintian $deb"
	# lintian exits non-zero on errors only, with --fail-on error.
	lintian --fail-on error --display-info --no-tag-display-limit "$deb" || rc=1
done
for rpm in "$dir"/firehose-*.rpm; do
	echo "== rpm -qpl $rpm"
	rpm -qpl "$rpm"
	echo "== rpm -qp --scripts $rpm"
	rpm -qp --scripts "$rpm"
	echo "== rpmlint $rpm"
	rpmlint -c "$here/rpm/rpmlint.toml" -r "$here/rpm/rpmlintrc" "$rpm" || rc=1
done
if [ $rc -eq 0 ]; then echo "check: PASS"; else echo "check: FAIL"; fi
exit $rc
