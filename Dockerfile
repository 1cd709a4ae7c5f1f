# One image for the six services and their one-shot commands, through the services' own
# entry point: `python -m services run intake|router|sla-monitor|notifier|archive|desk`, `... topics`,
# `... rebuild router|intake|archive` (the arguments after the entry point: CMD, compose's command,
# Kubernetes' args). It holds what a service runs and nothing else: schemas/ and services/,
# installed without extras. The tools (tools/) are not in it, so the `complaints` script that
# pip installs from pyproject.toml is removed: the image's command is the entry point above.
# Build: docker build -t complaints .   (deploy/compose.yaml builds it for the stack)

# ---- build: a virtualenv with the services and their dependencies (no extras) -----------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY services /src/services
RUN /opt/venv/bin/pip install /src && rm /opt/venv/bin/complaints

# ---- run: the virtualenv only, as an unprivileged user -----------------------------------
FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --no-create-home --home-dir /var/lib/complaints --shell /usr/sbin/nologin complaints \
    && mkdir -p /var/lib/complaints && chown 10001:10001 /var/lib/complaints
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COMPLAINTS_DATA_DIR=/var/lib/complaints \
    NOTIFIER_OUTBOX_DIR=/var/lib/complaints/outbox \
    SERVICE_PORT=8080
WORKDIR /var/lib/complaints
USER 10001
# SERVICE_PORT: the port of the service this container runs (8080-8083)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['SERVICE_PORT']}/healthz\", timeout=4)"]
ENTRYPOINT ["python", "-m", "services"]
CMD ["run", "intake"]
