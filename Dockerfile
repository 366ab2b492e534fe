# The lab image: every server strategy and the Locust load generators, from one image.
#
#   BASE_IMAGE=python:3.13-slim (default)      needs a container registry
#   BASE_IMAGE=concurrency-lab-base:trixie     offline: scripts/build-offline-base
#
# Optional inputs, picked up from the build context when present:
#   wheelhouse/ARCH/*.whl (scripts/wheelhouse; ARCH: x86_64, aarch64, one folder per platform)
#                                           -> pip install --no-index for the platform being built
#                                              (a pin built from source still needs the Debian mirror
#                                              for its compiler: images/lab-packages.sh)
#   ca-certs/*.pem|*.crt                    -> CA bundle for pip behind a TLS-intercepting
#                                              proxy; used in the build stage only, never
#                                              copied into the final image
# No "RUN --mount" and no "# syntax" line on purpose: this file builds with the classic
# builder (Docker Engine 20.10 without buildx) as well as with BuildKit.
ARG BASE_IMAGE=python:3.13-slim

# The servers and clients alone: the standard library is all they need. `--target server` builds
# just this stage, for any of the lab's Pythons (scripts/build-python-image; images/pythons.tsv).
FROM ${BASE_IMAGE} AS server
ENV PATH=/opt/lab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LANG=C.UTF-8
# A fixed, unprivileged user (compose also says user: 10001:10001). Debian's base has only
# python3; the lab's commands say python.
RUN set -eu; \
    if command -v useradd >/dev/null 2>&1; then \
        groupadd --system --gid 10001 lab; \
        useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin lab; \
    else \
        echo 'lab:x:10001:' >> /etc/group; \
        echo 'lab:x:10001:10001:lab:/tmp:/usr/sbin/nologin' >> /etc/passwd; \
    fi; \
    command -v python >/dev/null 2>&1 || ln -s "$(command -v python3)" /usr/local/bin/python
WORKDIR /app
COPY server/ /app/server/
COPY clients/ /app/clients/
RUN python -m compileall -q /app >/dev/null && python -m server.build
USER 10001:10001
EXPOSE 25000
STOPSIGNAL SIGTERM
# Every command runs on the CPUs in LAB_CPUS (compose sets it from .env's LAB_*_CPUS), of those the
# container has; without LAB_CPUS it runs untouched (server/affinity.py). Every later stage keeps it.
ENTRYPOINT ["python", "-S", "-m", "server.affinity"]
CMD ["python", "-m", "server", "--strategy", "threaded", "--host", "0.0.0.0", "--port", "25000"]

FROM ${BASE_IMAGE} AS deps
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=60 PIP_ROOT_USER_ACTION=ignore
# requirements/lab.txt is listed first so that each COPY has a source even when
# the optional directory is absent (a glob that matches nothing is then allowed).
COPY requirements/lab.txt /tmp/lab/requirements.txt
COPY requirements/from-source.txt images/lab-packages.sh /tmp/lab/
COPY requirements/lab.txt wheelhouse* /tmp/lab/wheels/
COPY requirements/lab.txt ca-certs* /tmp/lab/ca/
# Every platform's wheels, or a pin compiled from source where a platform has none (a compiler in
# this stage only): images/lab-packages.sh says how.
RUN sh /tmp/lab/lab-packages.sh && rm -rf /tmp/lab

# The lab image: the server stage plus Locust and its packages in /opt/lab, the locustfiles, and the
# lab's own package (the locustfiles use it; the experiments' live forms live there).
FROM server
USER root
COPY --from=deps /opt/lab /opt/lab
COPY locustfiles/ /app/locustfiles/
COPY lab/ /app/lab/
# /app/results/live: the one path the read-only Locust master writes (its live runs). compose mounts a
# named volume there, and Docker fills an empty named volume with this directory's owner: 10001.
RUN python -m compileall -q /app /opt/lab >/dev/null && python -c 'import server, clients, lab.records.store, locust, docker' \
    && install -d -o 10001 -g 10001 -m 0755 /app/results/live
USER 10001:10001
EXPOSE 25000 8089 5557
