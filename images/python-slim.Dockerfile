# A stand-in for the official python:X.Y-slim image, for machines without a container registry, so
# that the lab's default path (BASE_IMAGE=python:3.13-slim, pip installing from the package index)
# can be tested there. Never pulled, never pushed: its LABELs say it is the lab's and from which source.
# Built by scripts/build-python-image --official-standin X.Y, the way docker-library/python builds the
# real one: CPython compiled from source under /usr/local, shared libpython (ldconfig), pip from
# ensurepip, python/pip/pydoc/idle/python-config links beside python3/pip3, PATH, LANG=C.UTF-8,
# PYTHON_VERSION, CMD ["python3"], tests and .pyc files and the static libpython removed, and no
# compiler in the image. Not like it: no PGO/LTO (--enable-optimizations --with-lto take far longer),
# no tkinter and no dbm.gnu (their libraries are not in the base).
#
#   BASE_IMAGE  concurrency-lab-base:SUITE (scripts/build-offline-base), standing in for debian:SUITE-slim;
#               the debootstrap base carries Debian's python3, which the final stage purges
#   COMPILER    images/cpython.Dockerfile's stage "compiler" on the same base: the apt layer that the
#               free-threaded builds (X.Yt, X.Yg) compile with too
# Build context: this file, compile-cpython.sh and cpython.tar (as for images/cpython.Dockerfile).
ARG BASE_IMAGE=concurrency-lab-base:trixie
ARG COMPILER=concurrency-lab-compiler:trixie

FROM ${COMPILER} AS build
# The headers of the official image's modules that the shared compiler layer has none of (sqlite3,
# readline, curses, uuid); their libraries are in the base already, Debian's python3 needed them.
RUN set -eu; \
    timeout 600 apt-get update -q; \
    timeout 900 apt-get install -y -q --no-install-recommends libsqlite3-dev libreadline-dev libncurses-dev uuid-dev; \
    rm -rf /var/lib/apt/lists/*
ARG JOBS=2
COPY compile-cpython.sh cpython.tar /src/
RUN sh /src/compile-cpython.sh /usr/local --enable-shared --with-ensurepip=install \
        --enable-loadable-sqlite-extensions --enable-option-checking=fatal
# What the official image removes, and its links without the 3 (python-config too).
RUN set -eu; \
    find /usr/local -depth \( \( -type d -a \( -name test -o -name tests -o -name idle_test \) \) \
        -o \( -type f -a \( -name '*.pyc' -o -name '*.pyo' -o -name 'libpython*.a' \) \) \) -exec rm -rf '{}' +; \
    cd /usr/local/bin; \
    for name in idle3 pip3 pydoc3 python3 python3-config; do \
        link=$(echo "$name" | tr -d 3); \
        [ -s "$name" ] && [ ! -e "$link" ] && ln -s "$name" "$link" || exit 1; \
    done

FROM ${BASE_IMAGE}
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
ARG PYTHON_VERSION
ENV PYTHON_VERSION=${PYTHON_VERSION}
COPY --from=build /usr/local /usr/local
# Debian's python3 goes (the official image has no /usr/bin/python3); the libraries it needed stay.
RUN set -eu; \
    dpkg --purge $(dpkg-query -W -f '${Package}\n' | grep -E '^(lib)?python3') >/dev/null; \
    ldconfig; \
    [ "$(command -v python3)" = /usr/local/bin/python3 ] && [ ! -e /usr/bin/python3 ]; \
    python3 -c 'import os, platform, sysconfig, ssl, zlib, bz2, lzma, ctypes, sqlite3, readline, curses, uuid, ensurepip; \
        assert platform.python_version() == os.environ["PYTHON_VERSION"], platform.python_version(); \
        assert sysconfig.get_config_var("Py_ENABLE_SHARED") == 1, "libpython is not shared"; \
        print("lab:", platform.python_version(), "in /usr/local, shared libpython,", ssl.OPENSSL_VERSION)'; \
    pip --version; \
    if command -v gcc || command -v cc; then echo "lab: error: a compiler in the final image" >&2; exit 1; fi
ARG BASE_IMAGE
ARG STANDIN_FOR=python:X.Y-slim
ARG SOURCE="a CPython source tarball"
LABEL org.opencontainers.image.title="${STANDIN_FOR} (the concurrency lab's stand-in)" \
      org.opencontainers.image.description="NOT the official ${STANDIN_FOR}: the Python concurrency lab's stand-in for it, CPython ${PYTHON_VERSION} compiled from ${SOURCE} on ${BASE_IMAGE}" \
      concurrency-lab.standin-for="${STANDIN_FOR}" \
      concurrency-lab.source="${SOURCE}"
CMD ["python3"]
