#!/bin/sh
# Makes DIR, holding .deb files, a flat apt repository: Packages(.gz) and a
# Release with their checksums, which apt requires even from a
# `deb [trusted=yes] file:DIR ./` source.
set -eu
dir=${1:?usage: repo.sh DIR}
cd "$dir"
dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null
gzip -9nc Packages >Packages.gz
{
	echo "Origin: firehose"
	echo "Label: firehose"
	echo "Suite: stable"
	echo "Date: $(LC_ALL=C date -u -R)"
	echo "Architectures: $(sed -n 's/^Architecture: //p' Packages | sort -u | tr '\n' ' ' | sed 's/ $//')"
	echo "SHA256:"
	for f in Packages Packages.gz; do
		printf ' %s %s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$(wc -c <"$f" | tr -d ' ')" "$f"
	done
} >Release
echo "repo: $(grep -c '^Package:' Packages) package(s) in $dir"
