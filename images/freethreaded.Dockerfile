# CPython built free-threaded (--disable-gil, PEP 703/779), compiled from Debian's source
# package: no Debian suite ships a free-threaded build. Built once by scripts/build-python-image
# (X.Yt: the source package pythonX.Y on its suite, images/pythons.tsv) and kept as the image
# concurrency-lab-python:VERSION, the base of the lab's server image for that Python.
#
#   BASE_IMAGE=concurrency-lab-base:sid   offline (scripts/build-offline-base --suite sid)
#   BASE_IMAGE=debian:sid                 with a container registry
#
# Only the Debian mirror the base image already uses is needed (plain http, as apt always is).
# The build is the upstream tarball, without Debian's patches and without PGO/LTO: compiling with
# --enable-optimizations would run the test suite as its training load and take far longer.
# No "RUN --mount": the classic builder (Docker Engine 20.10 without buildx) builds this too.
ARG BASE_IMAGE=concurrency-lab-base:sid

FROM ${BASE_IMAGE} AS build
ARG SOURCE_PACKAGE=python3.14
ARG JOBS=2
ENV DEBIAN_FRONTEND=noninteractive
RUN set -eu; \
    # deb-src entries for the mirror and suite the image already has; none is written here.
    if [ -s /etc/apt/sources.list ]; then \
        sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list > /etc/apt/sources.list.d/lab-src.list; \
    fi; \
    for f in /etc/apt/sources.list.d/*.sources; do \
        [ -f "$f" ] && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"; \
    done; \
    # A mirror may serve a snapshot whose Release file is past its Valid-Until date; the
    # signatures are still checked.
    echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99lab-snapshot; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends \
        gcc make libc6-dev pkg-config xz-utils zlib1g-dev libffi-dev libssl-dev libbz2-dev liblzma-dev; \
    mkdir /src; cd /src; \
    # Newest first; a partial mirror may lack the newest version's files, so try each one listed.
    for version in $(apt-cache showsrc "$SOURCE_PACKAGE" | sed -n 's/^Version: //p' | sort -rV); do \
        if apt-get source --download-only -q "$SOURCE_PACKAGE=$version" >/tmp/source.log 2>&1; then \
            echo "lab: compiling $SOURCE_PACKAGE $version"; break; \
        fi; \
        echo "lab: the source of $SOURCE_PACKAGE $version is not on the mirror"; \
    done; \
    ls "$SOURCE_PACKAGE"_*.orig.tar.xz >/dev/null 2>&1 \
        || { echo "lab: error: no source of $SOURCE_PACKAGE could be downloaded from the Debian mirror" >&2; exit 1; }; \
    tar -xf "$SOURCE_PACKAGE"_*.orig.tar.xz; \
    rm -f ./*.tar.* ./*.dsc
RUN set -eu; cd /src/Python-*; \
    ./configure --disable-gil --prefix=/opt/python --without-ensurepip --disable-test-modules \
        --with-computed-gotos >/tmp/configure.log 2>&1 || { tail -n 40 /tmp/configure.log; exit 1; }; \
    make -j"$JOBS" -s >/tmp/make.log 2>&1 || { tail -n 60 /tmp/make.log; exit 1; }; \
    make -s install >/tmp/install.log 2>&1 || { tail -n 40 /tmp/install.log; exit 1; }; \
    ln -s "$(ls /opt/python/bin/python3.*t | head -n 1)" /opt/python/bin/lab-python; \
    /opt/python/bin/lab-python -c 'import sys; assert not sys._is_gil_enabled(), "the GIL is on"'; \
    rm -rf /opt/python/lib/python3*/config-* /opt/python/share; \
    find /opt/python -depth -name __pycache__ -path '*/test*' -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG SOURCE_PACKAGE=python3.14
COPY --from=build /opt/python /opt/python
# python and python3 on PATH are the free-threaded build; Debian's own python3 stays in /usr/bin.
RUN set -eu; \
    for name in python python3; do ln -s /opt/python/bin/lab-python /usr/local/bin/$name; done; \
    python -c 'import sys, sysconfig; assert sysconfig.get_config_var("Py_GIL_DISABLED"); assert not sys._is_gil_enabled(); print("free-threaded", sys.version)'
LABEL org.opencontainers.image.title=concurrency-lab-python \
      org.opencontainers.image.description="${SOURCE_PACKAGE} free-threaded (--disable-gil), from Debian's source package"
CMD ["python"]
