"""Storage failures an operator must act on; they reach the CLI as one readable line."""

from __future__ import annotations

from bot.errors import BotError

_UNAVAILABLE = "The bot's settings are unavailable right now; please try again later."


class StorageError(BotError):
    """The database cannot be used as configured."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=_UNAVAILABLE)


class DatabaseURLError(StorageError, ValueError):
    """DATABASE_URL names no backend the bot can use."""


class UnsupportedBackendError(StorageError, NotImplementedError):
    """A backend the interface allows for but that has not been written yet."""


class NewerDatabaseError(StorageError):
    """Opening would risk a newer bot's data with a schema this code does not understand."""
