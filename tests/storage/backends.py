"""The two backends every storage test runs against, and how a child process opens the same
storage as its parent (the URL goes through the environment, not the command line)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.storage import PostgresStorage, SQLiteStorage

__all__ = ["BACKENDS", "Backend", "open_from_env"]

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Backend:
    #: "sqlite" or "postgres".
    name: str
    #: The SQLite file, or the PostgreSQL URL of this test's own database.
    target: str

    def open(self) -> SQLiteStorage | PostgresStorage:
        """A new, unconnected storage on the same data: a restart, or a second process."""
        if self.name == "sqlite":
            return SQLiteStorage(self.target)
        return PostgresStorage(self.target)

    def child_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "STORAGE_BACKEND": self.name,
            "STORAGE_TARGET": self.target,
        }


def open_from_env() -> SQLiteStorage | PostgresStorage:
    """In a child process: the parent's storage, from `Backend.child_env`."""
    return Backend(os.environ["STORAGE_BACKEND"], os.environ["STORAGE_TARGET"]).open()
