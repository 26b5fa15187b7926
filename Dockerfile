# The bot's image: `docker compose up -d` (compose.yaml), or `docker build -t gemini-tts-bot .`
# then `docker run -d --restart unless-stopped --env-file .env -v tts-data:/data gemini-tts-bot`

# Stage 1 builds the project's wheel, so no source tree, build/ or egg-info reaches the image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2 is what runs: the installed package and its dependencies, nothing else.
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
# The project's own wheel is a few hundred KB; its dependencies come from the package index.
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels
# discord.py refuses every voice connection without davey (DAVE, Discord's end-to-end voice
# encryption): an image without it would be a bot that never speaks, so the build stops here.
RUN python -m discord -v | grep -q "^- davey v"

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
