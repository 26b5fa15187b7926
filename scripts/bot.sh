#!/usr/bin/env bash
# Sets up (first run) and starts the bot. Extra arguments go to `python -m bot`, e.g. `say`.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# libopus is discord.py's fallback Opus encoder; the bot sends Opus it encoded itself.
apt_install libopus0 || true
ensure_project ""
if [ ! -f .env ] && [ -z "${DISCORD_TOKEN:-}" ]; then
    cp .env.example .env
    echo "Created .env from .env.example: put your DISCORD_TOKEN and SEGMIND_API_KEY in it," >&2
    echo "then run this command again." >&2
    exit 2
fi
exec "$VENV/bin/python" -m bot "${@:-run}"
