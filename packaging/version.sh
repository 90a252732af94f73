#!/bin/sh
# Prints the package version for a `git describe --tags --always --dirty`
# string (argument 1). Packages need a version that starts with a digit and
# sorts upwards with every commit, which describe alone does not give:
#   v1.2.3                 -> 1.2.3
#   v1.2.3-4-gabc1234      -> 1.2.3+4.gabc1234      (after 1.2.3, unlike 1.2.3~4)
#   v1.2.3-4-gabc1234-dirty-> 1.2.3+4.gabc1234.dirty
#   v1.0.0-rc1             -> 1.0.0~rc1
#   abc1234 (no tag yet)   -> 0.0.0+<commit count>.gabc1234
set -eu
d=${1:?usage: version.sh DESCRIBE}
dirty=
case $d in *-dirty) dirty=.dirty d=${d%-dirty} ;; esac
case $d in
v[0-9]* | [0-9]*.*)
	d=${d#v}
	# tag-N-gHASH -> tag+N.gHASH; a bare tag stays as it is.
	v=$(printf '%s\n' "$d" | sed -E 's/^(.*)-([0-9]+)-(g[0-9a-f]+)$/\1+\2.\3/')
	;;
*)
	v=0.0.0+$(git rev-list --count HEAD).g$d
	;;
esac
# A hyphen left in the tag (v1.0.0-rc1) marks a pre-release: ~ sorts it
# before the release in dpkg and rpm alike, and rpm forbids hyphens.
v=$(printf '%s\n' "$v" | tr - '~')
case $v in *+*) printf '%s%s\n' "$v" "$dirty" ;; *) printf '%s%s\n' "$v" "${dirty:++dirty}" ;; esac
