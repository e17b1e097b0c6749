# levbot daemon image. Mount your config at /config/levbot.toml and a volume at /data.
#   docker build -t levbot .
#   docker run -d --name levbot -v levbot-data:/data -v $PWD/config:/config:ro \
#       --env-file .env levbot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY config ./config
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin levbot \
    && mkdir -p /data /config \
    && chown levbot:levbot /data

USER levbot
# Relative paths resolve from / : the default sqlite:///data/levbot.sqlite is /data/levbot.sqlite,
# and the paper exchange keeps its state beside it.
WORKDIR /
VOLUME ["/data"]

HEALTHCHECK --interval=60s --timeout=30s --start-period=90s --retries=3 \
    CMD ["levbot", "health", "--config", "/config/levbot.toml"]

CMD ["levbot", "run", "--config", "/config/levbot.toml", "--log-json"]
