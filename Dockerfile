# The status app anywhere (docs/setup.md, section 11): `velvet serve` as a non-root user, from
# the hash-locked requirements/serve.txt only, on a read-only root filesystem. Run it with
#   docker run --read-only --tmpfs /tmp -p 8000:8000 \
#     -e VELVET_STATE=https://github.com/OWNER/REPO.git -e VELVET_STATE_TOKEN \
#     -e VELVET_STATUS_TOKENS -e VELVET_ENV=prod velvet-status
# The manifest is the one built in (manifest/); mount another and set VELVET_MANIFEST to change it.
# BASE is the Python image to build on (a local mirror of it, where the registry is not reached).
ARG BASE=docker.io/library/python:3.12-slim-bookworm
FROM ${BASE}

# git fetches the state branch; nothing else is installed from the distribution
RUN command -v git >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*)

COPY requirements/serve.txt /app/requirements/serve.txt
RUN python3 -m venv /opt/velvet \
    && /opt/velvet/bin/pip install --no-cache-dir --disable-pip-version-check \
       --require-hashes -r /app/requirements/serve.txt

COPY velvet_runner /app/velvet_runner
COPY manifest /app/manifest
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin velvet

USER 10001:10001
WORKDIR /app
# Writable only /tmp (a tmpfs): the state branch's cache. No .pyc is written to the image.
ENV PATH=/opt/velvet/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VELVET_CACHE_DIR=/tmp/velvet-cache \
    VELVET_SERVE_HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=4).status == 200 else 1)"]
CMD ["python3", "-m", "velvet_runner", "serve"]
