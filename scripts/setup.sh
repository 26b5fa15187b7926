# Sourced by scripts/bot.sh and scripts/test.sh: prepares a fresh Debian machine, idempotently.
# Installs Debian packages only when missing, makes .venv, and reinstalls the project only when
# pyproject.toml changed, so the second run starts in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: please install these system packages: ${missing[*]}" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_ok() {
    "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

ensure_python() {
    if ! python_ok; then
        apt_install python3 python3-venv
        PYTHON=python3
        python_ok || { echo "setup: Python 3.11 or newer with venv is required" >&2; exit 1; }
    fi
}

# ensure_project EXTRAS: a virtualenv with the project installed (editable) with those extras.
ensure_project() {
    local extras="${1:-}" spec="." stamp want
    [ -n "$extras" ] && spec=".[$extras]"
    ensure_python
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating $VENV" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    stamp="$VENV/.installed-${extras:-base}"
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "setup: installing the project ($spec) into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
        # pip repeats the build backend's warnings; setuptools' "Editable installation" notice
        # (a folder named like a package may shadow it) reads like an error on a first run.
        PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" \
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1 \
            | { grep -v "is ignored: it is neither" || true; } >&2
        echo "$want" >"$stamp"
    fi
}

# The storage tests start their own throwaway PostgreSQL server: only the server's binaries are
# needed (Debian keeps them in /usr/lib/postgresql/VERSION/bin, off PATH).
ensure_postgres() {
    if [ -n "${PG_BIN:-}" ] || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
        || command -v initdb >/dev/null 2>&1; then
        return 0
    fi
    apt_install postgresql
}

# The cluster tests start their own throwaway Redis server: only redis-server is needed.
ensure_redis() {
    if [ -n "${REDIS_SERVER:-}" ] || command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    apt_install redis-server
}

# The service unit in deploy/ is checked by `systemd-analyze verify`, which reads unit files
# offline: installing the package starts nothing (no systemd runs in a container).
ensure_systemd_analyze() {
    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
}
