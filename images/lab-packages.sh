#!/bin/sh
# The lab image's Python packages, in the Dockerfile's deps stage: every pin of requirements/lab.txt
# into the venv /opt/lab, binary wheels only, from the wheelhouse when it holds this platform's
# wheels (wheelhouse/ARCH/, scripts/wheelhouse: no network at all), else from the package index
# (with ca-certs/ for pip behind a TLS-intercepting proxy). A pin of requirements/from-source.txt
# that has no wheel for this platform is compiled from its pinned source first, with a compiler that
# this stage installs from the Debian mirror: the final image copies /opt/lab alone, never the compiler.
#
# Layout (the Dockerfile's COPY): /tmp/lab/requirements.txt, /tmp/lab/from-source.txt,
# /tmp/lab/wheels/ (the wheelhouse, if any), /tmp/lab/ca/ (ca-certs/, if any).
set -eu
LAB=/tmp/lab
ARCH="$(uname -m)"
PIP=/opt/lab/bin/pip

python3 -m venv /opt/lab

for f in "$LAB"/ca/*.pem "$LAB"/ca/*.crt; do
    [ -f "$f" ] && cat "$f" >> "$LAB/ca-bundle.pem"
done
if [ -f "$LAB/ca-bundle.pem" ]; then
    echo "lab: using the CA bundle from ca-certs/ for pip"
    export PIP_CERT="$LAB/ca-bundle.pem" SSL_CERT_FILE="$LAB/ca-bundle.pem" REQUESTS_CA_BUNDLE="$LAB/ca-bundle.pem"
fi

WHEELS=""
if ls "$LAB/wheels/$ARCH/"*.whl >/dev/null 2>&1; then
    echo "lab: installing from the wheelhouse for $ARCH, offline"
    WHEELS="$LAB/wheels/$ARCH"
    set -- --no-index --find-links "$WHEELS"
elif ls "$LAB"/wheels/*/*.whl >/dev/null 2>&1; then
    echo "lab: error: the wheelhouse has no wheels for $ARCH (only for: $(ls "$LAB/wheels" | tr '\n' ' ')):" \
         "run scripts/wheelhouse --arch $ARCH" >&2
    exit 1
else
    echo "lab: installing from the package index"
    set --
fi

pin_of() {  # 'hdrhistogram==0.10.8', the pin of NAME in lab.txt
    pin="$(grep -i "^$1==" "$LAB/requirements.txt" | cut -d';' -f1 | tr -d ' ')"
    [ -n "$pin" ] || { echo "lab: error: $1 (requirements/from-source.txt) is not pinned in requirements/lab.txt" >&2; exit 1; }
    echo "$pin"
}

compiler=""
install_compiler() {
    [ -z "$compiler" ] || return 0
    headers="$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h"
    dev=""
    [ -f "$headers" ] || dev=libpython3-dev  # Debian's python3; the official images carry their headers
    echo "lab: installing gcc $dev for this build stage only"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev $dev >/dev/null
    compiler=gcc
}

mkdir -p "$LAB/built"
grep -v '^#' "$LAB/from-source.txt" | while read -r name needs; do
    [ -n "$name" ] || continue
    pin="$(pin_of "$name")"
    if [ -n "$WHEELS" ]; then  # scripts/wheelhouse brought a wheel, or else the source
        ls "$WHEELS/$(echo "$name" | tr - _)-${pin#*==}-"*.whl >/dev/null 2>&1 && continue
    elif probe="$("$PIP" download "$@" --no-deps --only-binary=:all: -d "$LAB/probe" "$pin" 2>&1)"; then
        continue  # a wheel for this platform: nothing to compile
    else
        case "$probe" in
            *"No matching distribution"*) ;;
            *) echo "$probe" >&2; echo "lab: error: pip could not look up $pin (above)" >&2; exit 1 ;;
        esac
    fi
    echo "lab: no wheel of $pin for $ARCH: compiling it from its source"
    install_compiler
    build_pins=""
    for need in $needs; do build_pins="$build_pins $(pin_of "$need")"; done
    # shellcheck disable=SC2086  # one word per pin
    "$PIP" install -q "$@" --only-binary=:all: $build_pins
    "$PIP" wheel -q "$@" --no-deps --no-build-isolation --no-binary "$name" -w "$LAB/built" "$pin"
done

# Byte-code on every CPU at once: under emulation (another platform's image) it took 2.6 of pip's 5.7 min.
"$PIP" install "$@" --no-compile --find-links "$LAB/built" --only-binary=:all: -r "$LAB/requirements.txt"
/opt/lab/bin/python -m compileall -q -j 0 /opt/lab >/dev/null
"$PIP" check
"$PIP" uninstall -y -q pip
