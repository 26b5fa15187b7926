"""`scripts/bot.sh` as a new operator meets it, in a copy of the checkout with a stand-in
virtualenv (so nothing is installed) and from another directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.helpers import fake_segmind_in_thread

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    for name in (".env.example", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    bin_dir = copy / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    digest = hashlib.sha256((copy / "pyproject.toml").read_bytes()).hexdigest()
    (copy / ".venv" / ".installed-base").write_text(digest + "\n")
    # libopus0 counts as installed: the script must not reach for apt-get in a test.
    tools = tmp_path / "tools"
    tools.mkdir()
    dpkg = tools / "dpkg-query"
    dpkg.write_text("#!/bin/sh\necho 'install ok installed'\n")
    dpkg.chmod(0o755)
    return copy


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    where = tmp_path / "elsewhere"
    where.mkdir()
    return where


def bot_sh(checkout: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    secret = {"DISCORD_TOKEN", "SEGMIND_API_KEY", "SEGMIND_BASE_URL", "VENV", "PYTHON"}
    env = {k: v for k, v in os.environ.items() if k not in secret}
    env["PATH"] = f"{checkout.parent / 'tools'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "bot.sh"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fake() -> Iterator[fs.FakeSegmind]:
    with fake_segmind_in_thread(api_key=TEST_API_KEY) as server:
        yield server


@pytest.mark.parametrize("args", [["voices"], ["--help"], ["say", "--help"]])
def test_works_before_env_exists(checkout: Path, elsewhere: Path, args: list[str]) -> None:
    done = bot_sh(checkout, elsewhere, *args)
    assert done.returncode == 0, done.stderr
    assert "Zephyr" in done.stdout or "usage:" in done.stdout
    assert not (checkout / ".env").exists()


def test_env_is_created_readable_by_the_owner_only(checkout: Path, elsewhere: Path) -> None:
    done = bot_sh(checkout, elsewhere, "credits")
    assert done.returncode == 2
    assert "Created .env" in done.stderr
    mode = stat.S_IMODE((checkout / ".env").stat().st_mode)
    assert mode == 0o600


def test_say_writes_where_the_user_stands(
    checkout: Path, elsewhere: Path, fake: fs.FakeSegmind
) -> None:
    (checkout / ".env").write_text(
        f"SEGMIND_API_KEY={TEST_API_KEY}\nSEGMIND_BASE_URL={fake.base_url}\n"
    )
    done = bot_sh(checkout, elsewhere, "say", "Hello there", "-o", "here.ogg")
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "here.ogg").is_file()
    assert not (checkout / "here.ogg").exists()
    assert f"Wrote {elsewhere / 'here.ogg'}:" in done.stdout


def test_check_looks_at_the_checkouts_setup(
    checkout: Path, elsewhere: Path, fake: fs.FakeSegmind
) -> None:
    """From anywhere, `check` reads the checkout's .env and looks at its data/ folder."""
    (checkout / ".env").write_text(
        f"SEGMIND_API_KEY={TEST_API_KEY}\nSEGMIND_BASE_URL={fake.base_url}\n"
    )
    done = bot_sh(checkout, elsewhere, "check")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("✗ Settings: Missing setting: DISCORD_TOKEN")
    assert f"✓ Data directory: {checkout / 'data'} " in done.stdout
    assert any(line.startswith("✓ Segmind: API key accepted") for line in lines)
    assert "- Discord: not checked: DISCORD_TOKEN is not set" in lines
    assert TEST_API_KEY not in done.stdout + done.stderr


#: A stand-in for pip 26, which repeats the build backend's warnings in its own process
#: (warnings.warn_explicit) when it installs: setuptools' editable notice, and any other.
FAKE_PIP = """
import sys
import warnings

if "-e" not in sys.argv:  # Upgrading pip itself says nothing.
    sys.exit(0)

class BuildBackendWarning(UserWarning):
    pass

notice = (
    "Editable installation.\\n!!\\n\\n        Please be careful with folders in your working "
    "directory with the same\\n        name as your package as they may take precedence "
    "during imports.\\n\\n!!"
)
warnings.warn_explicit(notice, BuildBackendWarning, "setuptools/command/editable_wheel.py", 354)
warnings.warn_explicit("A real problem.", BuildBackendWarning, "setuptools/dist.py", 1)
"""


def test_the_first_install_shows_no_editable_installation_notice(
    checkout: Path, elsewhere: Path
) -> None:
    (checkout / "fake_pip.py").write_text(FAKE_PIP)
    python = checkout / ".venv" / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = pip ]; then exec "{sys.executable}" '
        f'"{checkout / "fake_pip.py"}" "$@"; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    (checkout / ".venv" / ".installed-base").unlink()  # pyproject "changed": install again.
    done = bot_sh(checkout, elsewhere, "voices")
    assert done.returncode == 0, done.stderr
    assert "setup: installing the project (.)" in done.stderr
    assert "Editable installation" not in done.stderr
    assert "A real problem." in done.stderr  # Only that notice is quiet.
