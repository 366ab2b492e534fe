#!/bin/sh
# Download the upstream CPython tarball of Debian's source package PACKAGE (python3.13, ...) into DIR.
# Run by scripts/build-python-image in a container of the offline base (root, DIR mounted):
#   sh debian-source.sh PACKAGE DIR
# Only the Debian mirror the image already uses is needed (deb-src entries for it are added here,
# no host is written). The result, PACKAGE_X.Y.Z.orig.tar.xz, is the upstream Python-X.Y.Z tree.
set -eu
package=$1 out=$2
if [ -s /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list > /etc/apt/sources.list.d/lab-src.list
fi
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
done
# A mirror may serve a snapshot whose Release file is past its Valid-Until date; signatures are still checked.
echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99lab-snapshot
apt-get update -q >/tmp/update.log 2>&1 || { tail -n 5 /tmp/update.log; echo "lab: error: apt-get update failed"; exit 1; }
cd "$(mktemp -d)"
# Newest first; a partial mirror may lack the newest version's files, so try each one listed.
for version in $(apt-cache showsrc "$package" | sed -n 's/^Version: //p' | sort -rV); do
    if apt-get source --download-only -q "$package=$version" >/tmp/source.log 2>&1; then
        echo "lab: downloaded the source of $package $version"
        break
    fi
    echo "lab: the source of $package $version is not on the mirror"
    rm -f ./*
done
ls "$package"_*.orig.tar.[gx]z >/dev/null 2>&1 \
    || { echo "lab: error: no source of $package could be downloaded from the Debian mirror"; exit 1; }
cp "$package"_*.orig.tar.[gx]z "$out"/
