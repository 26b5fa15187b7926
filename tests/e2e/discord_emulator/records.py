"""What the bot sent, kept for assertions: every REST request, gateway and voice message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Upload:
    """One file of a multipart request, as Discord would store it."""

    field: str
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class RestRequest:
    method: str
    path: str  # Without the /api/v10 prefix.
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[Upload] = field(default_factory=list)
    status: int | None = None
    response: Any = None


@dataclass
class Interaction:
    """An interaction the emulator dispatched, and what has been done with it since."""

    id: int
    token: str
    kind: int
    created: float
    payload: dict[str, Any]
    callback_type: int | None = None
    #: When the bot answered it (the emulator's clock, as `created`): within Discord's 3 s.
    answered_at: float | None = None
    original: dict[str, Any] | None = None
    deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)
