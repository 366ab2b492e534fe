# Debian's binary package of a Python that is not the suite's python3 (sid's python3.15 beside its
# python3.14): installed from the Debian mirror the base image already uses, and made the python on
# PATH. Built by scripts/build-python-image as concurrency-lab-python:VERSION when the base's python3
# is not VERSION (images/pythons.tsv); with a registry, python:VERSION-slim needs none of this.
# No "RUN --mount": the classic builder builds this too.
ARG BASE_IMAGE=concurrency-lab-base:sid
FROM ${BASE_IMAGE}
ARG VERSION=3.15
ENV DEBIAN_FRONTEND=noninteractive
RUN set -eu; \
    echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99lab-snapshot; \
    apt-get update -q >/tmp/update.log 2>&1 || { tail -n 5 /tmp/update.log; exit 1; }; \
    if ! apt-cache show "python$VERSION" >/dev/null 2>&1; then \
        echo "lab: error: the Debian mirror has no package python$VERSION for this suite" >&2; exit 1; \
    fi; \
    apt-get install -y -q --no-install-recommends "python$VERSION" >/tmp/install.log 2>&1 \
        || { tail -n 20 /tmp/install.log; echo "lab: error: apt-get install python$VERSION failed" >&2; exit 1; }; \
    rm -rf /var/lib/apt/lists/* /tmp/*.log; \
    for name in python python3; do ln -sf "/usr/bin/python$VERSION" /usr/local/bin/$name; done; \
    python -c 'import sys; print("Debian", sys.version)'
LABEL org.opencontainers.image.title=concurrency-lab-python \
      org.opencontainers.image.description="Debian's python${VERSION} package"
CMD ["python"]
