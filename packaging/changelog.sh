#!/bin/sh
# Prints an nfpm (chglog) changelog with one entry for this build, so the
# packages carry the changelog Debian and RPM tools expect.
set -eu
pkgversion=${1:?usage: changelog.sh PKGVERSION GITVERSION}
gitversion=${2:?usage: changelog.sh PKGVERSION GITVERSION}
cat <<YAML
- semver: $pkgversion
  date: $(git log -1 --format=%cI)
  packager: firehose maintainers <maintainers@firehose.invalid>
  deb:
    urgency: medium
    distributions: [stable]
  changes:
    - note: "Built from git $gitversion."
YAML
