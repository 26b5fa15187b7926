#!/usr/bin/env bash
# Sets up (first run) and starts the bot. Extra arguments go to `python -m bot`, e.g. `say`.
# `voices`, `--help` and `--version` work before .env exists; `say`, `voices` and `credits`
# run where you stand (so `say … -o here.ogg` writes here), reading the checkout's .env;
# `run`, `sync`, `health` and `check` run in the checkout, where DATA_DIR (data/) lives.
CALLER="$PWD"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# libopus is discord.py's fallback Opus encoder; the bot sends Opus it encoded itself.
apt_install libopus0 || true
ensure_project ""

command="${1:-run}"
needs_settings=true
case "$command" in voices | -h | --help | --version) needs_settings=false ;; esac
for arg in "$@"; do
    case "$arg" in -h | --help) needs_settings=false ;; esac
done
if $needs_settings && [ ! -f .env ] && [ -z "${DISCORD_TOKEN:-}${SEGMIND_API_KEY:-}" ]; then
    # Secrets go in it: readable by you alone, from its first byte.
    (umask 077 && cp .env.example .env)
    echo "Created .env from .env.example: put your DISCORD_TOKEN and SEGMIND_API_KEY in it," >&2
    echo "then run this command again." >&2
    exit 2
fi
case "$command" in
    say | voices | credits | -h | --help | --version)
        cd "$CALLER"
        exec "$VENV/bin/python" -m bot --env-file "$ROOT/.env" "$@"
        ;;
esac
exec "$VENV/bin/python" -m bot "${@:-run}"
