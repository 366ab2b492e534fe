#!/bin/sh
# Compile CPython from /src/cpython.tar (Python-X.Y.Z/ at its top) and install it under PREFIX, in the
# build stage of images/cpython.Dockerfile and of images/python-slim.Dockerfile:
#   sh /src/compile-cpython.sh PREFIX CONFIGURE_OPTION...
# Quiet; a step that fails prints the tail of its log and exits 1. JOBS (env): make's parallel jobs.
set -eu
prefix=$1
shift
cd /src
tar -xf cpython.tar
rm cpython.tar
cd Python-*
echo "lab: compiling $(basename "$PWD") into $prefix: $*"
./configure --prefix="$prefix" "$@" >/tmp/configure.log 2>&1 || { tail -n 40 /tmp/configure.log; exit 1; }
make -j"${JOBS:-2}" -s >/tmp/make.log 2>&1 || { tail -n 60 /tmp/make.log; exit 1; }
make -s install >/tmp/install.log 2>&1 || { tail -n 40 /tmp/install.log; exit 1; }
