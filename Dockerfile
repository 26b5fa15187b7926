# The bot's image: `docker compose up -d` (compose.yaml), or `docker build -t gemini-tts-bot .`
# then `docker run -d --restart unless-stopped --env-file .env -v tts-data:/data gemini-tts-bot`
FROM python:3.11-slim

# PyAV's wheel carries FFmpeg (with libopus) itself; libopus0 is discord.py's fallback encoder.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus0 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install .

RUN useradd --system --uid 10001 --home-dir /app bot \
    && mkdir -p /data && chown bot /data
USER bot
VOLUME ["/data"]

# Healthy = the running bot's heartbeat (DATA_DIR/health.json, rewritten every 15 s) is fresh,
# its gateway is connected and speech is not paused (key rejected, credits gone). Reads a
# file, opens no port, so it works with metrics off.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot", "health"]

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
