"""Typed errors: each carries a line a member can read and, for upstream errors, what Segmind said.

Messages never contain secrets: the client redacts the API key from anything upstream echoes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDeniedError",
    "AudioDeadlineError",
    "AudioError",
    "AuthenticationError",
    "BackupError",
    "BadAudioError",
    "BadRequestError",
    "BotError",
    "ChannelFullError",
    "CooldownError",
    "DatabaseFileError",
    "DatabaseURLError",
    "InvalidRequestError",
    "JobFailedError",
    "JobLostError",
    "JobTimeoutError",
    "MethodNotAllowedError",
    "ModelNotFoundError",
    "ModelRetiredError",
    "NarrationDisabledError",
    "NewerDatabaseError",
    "NotConnectedError",
    "NotInVoiceError",
    "OutOfCreditsError",
    "PermissionDeniedError",
    "QueueFullError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestExpiredError",
    "SchedulerClosedError",
    "SegmindConnectionError",
    "SegmindError",
    "SegmindTimeoutError",
    "ServerError",
    "SettingsError",
    "StorageError",
    "UnexpectedStatusError",
    "UnsupportedBackendError",
    "VoicePermissionError",
    "error_class_for_status",
]


class BotError(Exception):
    """Base of every error the bot expects; `user_message` is safe to show in Discord."""

    user_message: str = "Something went wrong."

    def __init__(self, message: str | None = None, *, user_message: str | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        super().__init__(message or self.user_message)


class InvalidRequestError(BotError):
    """Input refused before any API call, so it cost nothing."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message, user_message=user_message)


class SegmindError(BotError):
    """Anything that went wrong talking to Segmind."""

    #: A short phrase for operators and the CLI, e.g. "the API key was rejected".
    meaning: ClassVar[str] = "the speech service failed"
    #: Worth another attempt after a wait.
    retryable: ClassVar[bool] = False
    #: The bot's owner must act (key, plan, credits, URL); members cannot fix it.
    operator_problem: ClassVar[bool] = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        upstream_message: str | None = None,
        request_id: str | None = None,
        user_message: str | None = None,
    ) -> None:
        self.status = status
        self.upstream_message = upstream_message
        self.request_id = request_id
        self.attempts = 1
        self.detail = detail
        super().__init__(self._describe(), user_message=user_message or self.default_user_message())

    def default_user_message(self) -> str:
        return type(self).user_message

    def status_meaning(self) -> str:
        return self.meaning

    def _describe(self) -> str:
        meaning = self.status_meaning()
        head = f"HTTP {self.status} ({meaning})" if self.status else meaning.capitalize()
        parts = [head]
        if self.detail:
            parts.append(self.detail)
        if self.upstream_message:
            parts.append(f"Segmind said: {self.upstream_message}")
        return ": ".join(parts)

    def __str__(self) -> str:
        text = self._describe()
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text


class BadRequestError(SegmindError):
    meaning = "bad request"

    def default_user_message(self) -> str:
        said = f": {self.upstream_message}" if self.upstream_message else "."
        return f"The speech service refused this request{said}"


class AuthenticationError(SegmindError):
    meaning = "the API key was rejected"
    operator_problem = True
    user_message = (
        "The bot is misconfigured: its Segmind API key was rejected. The bot's owner has been told."
    )


class PermissionDeniedError(SegmindError):
    meaning = "the API key lacks permission for this model"
    operator_problem = True
    user_message = (
        "The bot's Segmind account may not use this voice model. The owner has been told."
    )


class ModelNotFoundError(SegmindError):
    meaning = "model or endpoint not found (check SEGMIND_BASE_URL and SEGMIND_MODEL)"
    operator_problem = True
    user_message = (
        "The bot is misconfigured: the speech model was not found. The owner has been told."
    )


class OutOfCreditsError(SegmindError):
    meaning = "out of credits or spend limit reached"
    operator_problem = True
    user_message = (
        "The bot's Segmind account is out of credits, so speech is paused until the owner "
        "tops it up."
    )


class RateLimitedError(SegmindError):
    meaning = "rate limited"
    retryable = True
    user_message = "The speech service is busy right now; please try again in a minute."

    #: Seconds to wait from when the answer arrived, if the headers said; else None.
    retry_after: float | None = None


class ServerError(SegmindError):
    meaning = "server error"
    retryable = True
    user_message = "The speech service had a problem and did not recover in time. Please try again."

    _MEANINGS: ClassVar[dict[int, str]] = {
        500: "server error",
        502: "bad gateway",
        503: "service unavailable",
        504: "gateway timeout",
    }

    def status_meaning(self) -> str:
        return self._MEANINGS.get(self.status or 0, self.meaning)


class UnexpectedStatusError(SegmindError):
    meaning = "unexpected answer"
    user_message = "The speech service gave an answer the bot does not understand."


class BadAudioError(SegmindError):
    """A success status whose body is not audio: an upstream fault, never a file."""

    meaning = "the answer was not audio"
    user_message = "The speech service sent back something that is not audio. Please try again."


class SegmindTimeoutError(SegmindError):
    meaning = "timed out"
    retryable = True
    user_message = "The speech service took too long to answer. Please try again."


class SegmindConnectionError(SegmindError):
    meaning = "could not reach Segmind"
    retryable = True
    user_message = "The bot could not reach the speech service. Please try again shortly."


class MethodNotAllowedError(SegmindError):
    meaning = "method not allowed (check SEGMIND_BASE_URL and SEGMIND_API)"
    operator_problem = True
    user_message = (
        "The bot is misconfigured: the speech service refused how it was called. The owner "
        "has been told."
    )


class ModelRetiredError(SegmindError):
    meaning = "the model was retired: set SEGMIND_MODEL to a current one"
    operator_problem = True
    user_message = (
        "The speech model this bot uses has been retired. The owner has been told to switch."
    )


class JobFailedError(SegmindError):
    """A 422: the request failed validation upstream (v1), or its v2 job FAILED."""

    meaning = "the request could not be processed"
    user_message = "The speech service could not make this speech. Try rewording it."


class JobTimeoutError(SegmindError):
    """An accepted v2 job that did not finish in time: polling stops, nothing is re-submitted."""

    meaning = "the job was accepted but did not finish in time"
    user_message = "The speech service took too long to finish. Please try again."


class JobLostError(SegmindError):
    """An accepted v2 job that Segmind kept answering 404 for (never visible, or its result
    gone): polling stops after a bounded number of tries, and nothing is re-submitted, since
    a new submit may be paid a second time."""

    meaning = "the job was accepted but Segmind could not find it"
    user_message = (
        "The speech service lost track of this request after accepting it. Please try again."
    )


_BY_STATUS: dict[int, type[SegmindError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    # Segmind documents 406 for an empty account; 402 (Payment Required) can only mean the same.
    402: OutOfCreditsError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    405: MethodNotAllowedError,
    406: OutOfCreditsError,
    410: ModelRetiredError,
    422: JobFailedError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[SegmindError]:
    """Map an HTTP status to its error type; any 5xx is a retryable server error."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status <= 599:
        return ServerError
    return UnexpectedStatusError


class CooldownError(BotError):
    """A member asked again too soon; nothing was queued and nothing was spent."""

    def __init__(self, retry_after: float) -> None:
        #: Seconds until the member may ask again.
        self.retry_after = max(0.0, retry_after)
        super().__init__(
            f"cooldown: {self.retry_after:.1f} s left",
            user_message=f"You're on cooldown; try again in {max(1, round(self.retry_after))} s.",
        )


class QueueFullError(BotError):
    """Too much is already waiting: for this member (`per_user`) or for everyone."""

    def __init__(self, *, per_user: bool, limit: int) -> None:
        self.per_user = per_user
        self.limit = limit
        if per_user:
            message = (
                f"You already have {limit} request{'s' if limit != 1 else ''} waiting; "
                "wait for one to finish first."
            )
        else:
            message = "The speech queue is full right now; please try again in a minute."
        super().__init__(message, user_message=message)


class SchedulerClosedError(BotError):
    """The bot is shutting down; the request was never sent, so it cost nothing."""

    user_message = "The bot is restarting, so your request was not sent. Please try again shortly."


class RequestExpiredError(BotError):
    """A request waited longer than Discord lets the bot answer it."""

    user_message = "Your request waited too long in the queue and was dropped. Please try again."


class AccessDeniedError(BotError):
    """A server rule (allowed role, files or voice turned off) refuses this use of the bot."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message, user_message=user_message)


class QuotaExceededError(BotError):
    """The member used their daily allowance in this server; it resets at `reset_at` (UTC)."""

    def __init__(self, *, limit: int, needed: int, reset_at: float) -> None:
        self.limit = limit
        self.needed = needed
        #: Epoch seconds of the reset, for a Discord timestamp.
        self.reset_at = reset_at
        super().__init__(
            f"daily quota of {limit} reached", user_message=self.message("at midnight UTC")
        )

    def message(self, when: str) -> str:
        """The member's line, with the reset put as `when` (e.g. a Discord timestamp)."""
        more = f" (this one needs {self.needed})" if self.needed > 1 else ""
        return (
            f"You've used your {self.limit} requests for today in this server{more}. "
            f"The count resets {when}."
        )


# -- operator-facing: settings, storage and audio the bot cannot use ---------------------------


class SettingsError(Exception):
    """Settings that are missing or invalid, named the way the operator writes them."""


class AudioError(Exception):
    """Bytes that were supposed to be audio and are not; the message says why."""


class AudioDeadlineError(AudioError):
    """Decoding was stopped at the call's deadline: a thread cannot be killed, so the decoder
    checks the clock between packets and gives up with this."""


_UNAVAILABLE = "The bot's settings are unavailable right now; please try again later."


class StorageError(BotError):
    """The database cannot be used as configured."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=_UNAVAILABLE)


class DatabaseFileError(StorageError):
    """The database file cannot be read or written; the message names the file (a path, never
    a URL, so no password can appear in it)."""


class DatabaseURLError(StorageError, ValueError):
    """DATABASE_URL names no backend the bot can use."""


class UnsupportedBackendError(StorageError, NotImplementedError):
    """A backend the interface allows for but that has not been written yet."""


class NewerDatabaseError(StorageError):
    """Opening would risk a newer bot's data with a schema this code does not understand."""


class BackupError(StorageError):
    """A backup, restore or move between backends refused or failed; the message says which
    file or server (never a password) and whether anything was changed."""


# -- Discord voice and narration ------------------------------------------------------------


class NotInVoiceError(BotError):
    user_message = "Join a voice channel first, then try again."


class VoicePermissionError(BotError):
    def __init__(self, channel_mention: str) -> None:
        super().__init__(
            user_message=f"I need the Connect and Speak permissions in {channel_mention}."
        )


class ChannelFullError(BotError):
    def __init__(self, channel_mention: str) -> None:
        super().__init__(
            user_message=f"{channel_mention} is full, so I can't join it. Make room, or raise "
            "its user limit."
        )


class NotConnectedError(BotError):
    user_message = "I'm not in a voice channel here. Use /join first."


class NarrationDisabledError(BotError):
    user_message = (
        "Narration is off: the bot's owner must enable the Message Content intent in the "
        "Discord Developer Portal (Bot → Privileged Gateway Intents) and restart the bot."
    )
