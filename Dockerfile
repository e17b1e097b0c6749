# levbot daemon image.
#
# First run: the image reads /config/levbot.toml, which you make on the host from an
# example and mount (without it every command says so in one line and exits 2):
#   cp config/paper.toml config/levbot.toml       # offline paper account, no keys
#   docker build -t levbot .
#   docker run -d --name levbot --stop-timeout 30 \
#       -v levbot-data:/data -v "$PWD/config:/config:ro" --env-file .env levbot
# or, with the same settings written down: docker compose up -d (docker-compose.yml).
#
# /data: a named volume (as above) just works: Docker copies the image's /data, owned by
# the levbot user, into it. A host directory (-v "$PWD/data:/data") keeps the host's
# owner, which uid 10001 cannot write to: run as its owner instead,
#   docker run ... --user "$(id -u):$(id -g)" -v "$PWD/data:/data" ...
# (we do not chown at start-up from a root entrypoint: the daemon never runs as root,
# not even for a moment, and never changes the owner of the operator's files).
#
# Stopping: SIGTERM makes the daemon stop scheduling and let a running cycle finish
# (DRAIN_TIMEOUT 10 s in bot/entrypoints/daemon.py), then flush alerts (~3 s) and stop
# Telegram (~5 s). Docker's default 10 s before SIGKILL is shorter than that, so give it
# 30 s: `docker run --stop-timeout 30` (compose: stop_grace_period: 30s). A SIGKILL in
# the middle is safe (the journal settles it at the next start) but is not a clean stop.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Any uid (--user) can run the image: matplotlib (/chart, reports) caches under /tmp
    # instead of a home directory that uid may not have.
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
# config/ is not copied: the paper example's feed ("builtin") ships inside the package,
# and the config the daemon reads is the one mounted at /config.
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
# EXTRA_PACKAGES: drivers beyond the default SQLite one, e.g. "asyncpg" for the
# PostgreSQL service in docker-compose.yml (docker compose build --build-arg ...).
ARG EXTRA_PACKAGES=""
RUN pip install . ${EXTRA_PACKAGES} \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin levbot \
    && mkdir -p /data /config \
    && chown levbot:levbot /data \
    && chmod 0700 /data

USER levbot
# Relative paths resolve from / : the default sqlite:///data/levbot.sqlite is /data/levbot.sqlite,
# and the paper exchange keeps its state beside it.
WORKDIR /
VOLUME ["/data"]
STOPSIGNAL SIGTERM

# Exit 1 when an account's last good cycle is older than 3 intervals; 2 without a config.
HEALTHCHECK --interval=60s --timeout=30s --start-period=90s --retries=3 \
    CMD ["levbot", "health", "--config", "/config/levbot.toml"]

CMD ["levbot", "run", "--config", "/config/levbot.toml", "--log-json"]
