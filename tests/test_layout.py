"""The house's layout, kept true: which layer may import which, and modules that stay small.

The Discord boundary itself is ruff's banned-api rule (TID251, in pyproject.toml); the first
test proves that rule bites where it should and nowhere else.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What each layer may import from the project, besides itself. Anything else is a mistake:
#: a pure layer reaching for I/O, or a lower layer reaching up.
ALLOWED: dict[str, set[str]] = {
    # The messages members read, in each language: pure text, importing nothing.
    "bot.locales": set(),
    # A member's line is a catalogue key, rendered in their language where they are known.
    "bot.errors": {"bot.locales"},
    # Pure text: what the client's errors and the log handler both take secrets out with.
    "bot.redaction": set(),
    # Rules read the stored settings' plain models; stored values are checked by the same
    # rules (a saved voice must be one of the 30): the two share data, not behaviour.
    "bot.speech": {"bot.errors", "bot.locales", "bot.storage"},
    "bot.audio": {"bot.errors"},
    "bot.storage": {"bot.errors", "bot.config", "bot.locales", "bot.speech"},
    "bot.config": {"bot.errors", "bot.speech"},
    "bot.synthesis": {
        "bot.errors",
        "bot.locales",
        "bot.config",
        "bot.redaction",
        "bot.speech",
        "bot.audio",
        "bot.storage",
    },
    "bot.services": {
        "bot.__version__",
        # Only to set how the allocator returns large freed buffers, once at start.
        "bot.audio.allocator",
        "bot.errors",
        "bot.config",
        "bot.storage",
        "bot.synthesis",
    },
    # Operations: they read the services' state; none of them sees Discord.
    "bot.logs": {"bot.config", "bot.redaction"},
    "bot.health": {"bot.config"},
    "bot.metrics": {"bot.config", "bot.health", "bot.services", "bot.synthesis"},
    # Unexpected errors for the operator: text made safe, sent through a callback it is given.
    "bot.incidents": {"bot.redaction"},
    # The terminal's commands beside `bot.cli`: none of them loads discord.py (`check` asks
    # Discord over plain HTTP), so they start fast and stay on this side of the boundary.
    "bot.terminal": {"bot.redaction"},
    "bot.say": {
        "bot.audio",
        "bot.config",
        "bot.errors",
        "bot.redaction",
        "bot.services",
        "bot.speech",
        "bot.synthesis",
        "bot.terminal",
    },
    "bot.check": {
        "bot.__version__",
        "bot.config",
        "bot.errors",
        "bot.logs",
        "bot.redaction",
        "bot.services",
        "bot.storage",
        "bot.synthesis",
        "bot.terminal",
    },
}


def modules(package: str) -> list[Path]:
    base = ROOT.joinpath(*package.split("."))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    return sorted(base.rglob("*.py"))


def project_imports(path: Path) -> set[str]:
    """The project modules a file imports, at any depth (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module in {"bot", "cogs"}:
            names = [f"{node.module}.{alias.name}" for alias in node.names]  # submodules
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in {"bot", "cogs"})
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 1 else parts[0]


def test_the_discord_ban_bites_in_the_core_and_not_in_the_adapters() -> None:
    def ruff(filename: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--select=TID251",
                f"--stdin-filename={filename}",
                "-",
            ],
            input="from discord import app_commands\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    for core in ("bot/synthesis/stream.py", "bot/speech/cleanup.py", "bot/services.py"):
        result = ruff(core)
        assert result.returncode == 1, core
        assert "TID251" in result.stdout
    for adapter in ("bot/app.py", "bot/playback/player.py", "cogs/speak.py"):
        assert ruff(adapter).returncode == 0, adapter


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    allowed = ALLOWED[layer] | {layer}
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(layer)
        for name in project_imports(path)
        if layer_of(name) not in allowed and name not in allowed
    }
    assert not wrong, sorted(wrong)


def test_only_the_app_loads_the_cogs() -> None:
    reaching = [
        str(path.relative_to(ROOT))
        for path in modules("bot")
        if any(name.split(".")[0] == "cogs" for name in project_imports(path))
    ]
    assert reaching == ["bot/app.py"]


def test_no_extension_imports_another() -> None:
    """A cog extension uses only `bot` and the private helpers (`cogs._*`): one extension
    that fails to load must never take a second down with it."""
    reaching = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules("cogs")
        for name in project_imports(path)
        if name.split(".")[0] == "cogs"
        and not name.split(".")[1].startswith("_")
        and name.split(".")[1] != path.stem
    }
    assert not reaching, sorted(reaching)


def test_narration_extension_stays_thin() -> None:
    """Narration's decisions live in `bot.playback`; its extension only translates events."""
    assert len((ROOT / "cogs" / "narration.py").read_text().splitlines()) < 250


def test_no_module_grows_past_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for folder in ("bot", "cogs")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long


def test_every_module_says_what_it_exports() -> None:
    """`__all__` everywhere in bot/ and cogs/: a module's face is written down, not guessed."""
    missing = [
        str(path.relative_to(ROOT))
        for folder in ("bot", "cogs")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "__main__.py"
        and "__all__" not in path.read_text()
        and len(ast.parse(path.read_text()).body) > 1  # more than a docstring
    ]
    assert not missing
