# CPython compiled from an upstream source tarball, free-threaded (--disable-gil, PEP 703/779) or
# with the GIL: no Debian suite ships a free-threaded build, and the GIL build from the same source
# with the same flags (the "twin", VERSION X.Yg in images/pythons.tsv) separates what free-threading
# costs from what this build lacks next to Debian's (PGO, LTO, Debian's patches).
# Built by scripts/build-python-image and kept as concurrency-lab-python:VERSION, the base of the
# lab's server image for that Python. Its build context is a directory with this file and
#   cpython.tar   the source tarball (Python-X.Y.Z/ at its top; .tar.xz, .tgz, ... all fit):
#                 from the Debian mirror (images/debian-source.sh) or from --tarball PATH
# so nothing is downloaded here but the compiler (from the Debian mirror the base image already uses).
#
#   BASE_IMAGE=concurrency-lab-base:sid   offline (scripts/build-offline-base --suite sid)
#   BASE_IMAGE=debian:sid                 with a container registry
#   GIL=disabled                          free-threaded (X.Yt); GIL=enabled: its twin (X.Yg)
#
# No PGO/LTO: --enable-optimizations would run the test suite as its training load and take far longer.
# No "RUN --mount": the classic builder (Docker Engine 20.10 without buildx) builds this too. The
# compiler's layer comes before the tarball and the tarball's before GIL, so that a twin compiled
# after its free-threaded build reuses both, and the same tarball again reuses everything. The
# compiler is a stage of its own ("--target compiler"): images/python-slim.Dockerfile (the stand-in
# for python:X.Y-slim) builds FROM it, so one apt layer serves every compile on a base.
ARG BASE_IMAGE=concurrency-lab-base:sid

FROM ${BASE_IMAGE} AS compiler
ENV DEBIAN_FRONTEND=noninteractive
RUN set -eu; \
    # A mirror may serve a snapshot whose Release file is past its Valid-Until date; the
    # signatures are still checked.
    echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99lab-snapshot; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends \
        gcc make libc6-dev pkg-config xz-utils zlib1g-dev libffi-dev libssl-dev libbz2-dev liblzma-dev; \
    rm -rf /var/lib/apt/lists/*

FROM compiler AS build
ARG JOBS=2
COPY compile-cpython.sh cpython.tar /src/
ARG GIL=disabled
RUN set -eu; \
    case "$GIL" in \
        disabled) flags=--disable-gil ;; \
        enabled) flags= ;; \
        *) echo "lab: error: GIL must be enabled or disabled, not '$GIL'" >&2; exit 1 ;; \
    esac; \
    sh /src/compile-cpython.sh /opt/python $flags --without-ensurepip --disable-test-modules \
        --with-computed-gotos; \
    ln -s "$(ls /opt/python/bin | grep -E '^python3\.[0-9]+t?$' | head -n 1)" /opt/python/bin/lab-python; \
    rm -rf /opt/python/lib/python3*/config-* /opt/python/share; \
    find /opt/python -depth -name __pycache__ -path '*/test*' -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG GIL=disabled
COPY --from=build /opt/python /opt/python
# python and python3 on PATH are this build; Debian's own python3 stays in /usr/bin.
RUN set -eu; \
    for name in python python3; do ln -s /opt/python/bin/lab-python /usr/local/bin/$name; done; \
    python -c 'import sys, sysconfig; free = bool(sysconfig.get_config_var("Py_GIL_DISABLED")); \
        want = sys.argv[1] == "disabled"; \
        assert free == want and getattr(sys, "_is_gil_enabled", lambda: True)() != want, "the GIL is not " + sys.argv[1]; \
        print("free-threaded" if free else "GIL", sys.version)' "$GIL"
ARG SOURCE="a CPython source tarball"
LABEL org.opencontainers.image.title=concurrency-lab-python \
      org.opencontainers.image.description="CPython compiled from ${SOURCE}, GIL ${GIL}"
CMD ["python"]
