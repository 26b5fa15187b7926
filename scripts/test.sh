#!/usr/bin/env bash
# Sets up (first run) and runs every check: lint, formatting, types, and the whole test suite.
# Needs no network after setup, no Discord and no Segmind key. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ensure_project dev
ensure_postgres
ensure_redis
ensure_systemd_analyze
# PostgreSQL, Redis and systemd-analyze are installed now: their tests must run, never skip.
# (promtool is not installed: Debian's `prometheus` is a whole server; its check skips.)
export REQUIRE_POSTGRES=1 REQUIRE_REDIS=1 REQUIRE_SYSTEMD_ANALYZE=1
export PYTHONDONTWRITEBYTECODE=1
# A developer's own .env and keys must not leak into the tests.
unset DISCORD_TOKEN SEGMIND_API_KEY SEGMIND_BASE_URL
echo "== ruff" && "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check .
echo "== mypy" && "$VENV/bin/mypy"
# One worker per core (pytest-xdist): the suite's many small servers and processes overlap.
# Tests marked with one xdist_group share a worker (and its module-wide bot cluster).
echo "== pytest" && "$VENV/bin/pytest" -n auto --dist loadgroup "$@"
