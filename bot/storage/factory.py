"""Choosing the backend from DATABASE_URL, so the rest of the bot only ever asks for `Storage`."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings, database_url_problem
from bot.errors import DatabaseURLError
from bot.storage.base import Storage
from bot.storage.postgres import PostgresStorage, is_postgres_url
from bot.storage.sqlite import SQLiteStorage

__all__ = ["DEFAULT_FILE", "open_storage", "sqlite_path"]

DEFAULT_FILE = "bot.db"


def sqlite_path(settings: Settings) -> Path:
    """Where the SQLite file lives. URLs follow SQLAlchemy: `sqlite:///bot.db` is relative to the
    working directory, `sqlite:////srv/bot.db` (four slashes) is absolute.

    Errors never repeat the URL: a PostgreSQL one may carry a password.
    """
    url = settings.database_url.strip()
    if not url:
        return settings.data_dir / DEFAULT_FILE
    if is_postgres_url(url):
        raise DatabaseURLError("DATABASE_URL names a PostgreSQL server, not a SQLite file.")
    problem = database_url_problem(url)
    if problem:
        raise DatabaseURLError(f"DATABASE_URL is {problem}.")
    path = url.partition("://")[2][1:]
    return Path(path) if path else settings.data_dir / DEFAULT_FILE


async def open_storage(settings: Settings) -> Storage:
    """The configured backend, connected and migrated: PostgreSQL for postgresql:// (or
    postgres://) URLs, else SQLite."""
    storage: Storage
    if is_postgres_url(settings.database_url):
        storage = PostgresStorage(settings.database_url)
    else:
        storage = SQLiteStorage(sqlite_path(settings))
    await storage.connect()
    return storage
