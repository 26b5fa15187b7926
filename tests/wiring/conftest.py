"""The `wired` fixture for every wiring test module."""

from __future__ import annotations

from tests.wiring.harness import wired as wired
