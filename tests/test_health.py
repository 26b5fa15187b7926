"""`python -m bot health` (Docker's HEALTHCHECK) against the heartbeat a bot writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.health import MAX_AGE, Heartbeat, Status, check, health_path

ROOT = Path(__file__).resolve().parent.parent


def health_command(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "SEGMIND_API_KEY"}}
    return subprocess.run(
        [sys.executable, "-m", "bot", "health"],
        cwd=data_dir.parent,
        env={**env, "PYTHONPATH": str(ROOT), "DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_health_command_follows_the_heartbeat(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    state: dict[str, Any] = {"connected": True, "halted": None}
    beat = Heartbeat(
        health_path(settings),
        lambda: Status(gateway_connected=bool(state["connected"]), halted=state["halted"]),
    )
    done = health_command(settings.data_dir)
    assert (done.returncode, done.stdout.split(":")[0]) == (1, "unhealthy")
    assert "not running" in done.stdout

    beat.start()
    await beat.beat()
    done = health_command(settings.data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "healthy: connected to Discord, speech available\n"

    state["connected"] = False
    await beat.beat()
    done = health_command(settings.data_dir)
    assert done.returncode == 1
    assert "not connected to Discord" in done.stdout

    state.update(connected=True, halted="HTTP 406 (out of credits)")
    await beat.beat()
    assert check(settings) == (
        False,
        "unhealthy: speech is paused for everyone: HTTP 406 (out of credits)",
    )

    await beat.stop()
    assert not health_path(settings).exists()  # Stopped cleanly: not running, not stuck.


def test_a_stale_heartbeat_means_stuck(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    path = health_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gateway_connected": True, "halted": None, "updated": 1000.0}))
    healthy, message = check(settings, now=1000.0 + MAX_AGE + 1)
    assert not healthy
    assert "stuck" in message
    assert check(settings, now=1000.0 + 1)[0]
    path.write_text("{half a fi")
    healthy, message = check(settings, now=time.time())
    assert not healthy
    assert "cannot read" in message
