"""Large buffers go back to the system when freed: glibc is told so once, anything else is
left as it is."""

from __future__ import annotations

import ctypes
import sys

import pytest

from bot.audio import allocator


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"),
    reason="glibc only",
)
def test_glibc_is_told_to_map_large_buffers_on_their_own() -> None:
    assert allocator.map_large_buffers() is True
    assert allocator.map_large_buffers() is True  # idempotent: the bot may open services twice


class NotGlibc:
    """A C library with a mallopt but no gnu_get_libc_version (musl's looks like this)."""

    def __init__(self, name: object) -> None:
        self.name = name

    @property
    def mallopt(self) -> object:  # pragma: no cover - reaching it is the failure
        raise AssertionError("mallopt called on a C library that is not glibc")


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", NotGlibc)
    assert allocator.map_large_buffers() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.map_large_buffers() is False
