from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings

#: A key that tests look for in every log line, error and exception: it must never appear.
TEST_API_KEY = "sk-test-SECRET-4f9c2d"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real settings (environment or .env) out of every test."""
    fields = {field.upper() for field in Settings.model_fields}
    for name in list(os.environ):
        if name.upper() in fields:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        overrides.setdefault("segmind_api_key", TEST_API_KEY)
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(env_file=None, **overrides)

    return build
