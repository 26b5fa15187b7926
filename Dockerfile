# The bot's image: `docker build -t gemini-tts-bot .` then
# `docker run --env-file .env -v tts-data:/data gemini-tts-bot`
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

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
