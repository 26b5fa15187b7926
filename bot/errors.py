"""Typed errors: each carries a line a member can read and, for upstream errors, what Segmind said.

Messages never contain secrets: the client redacts the API key from anything upstream echoes.
"""

from __future__ import annotations

from typing import ClassVar

from bot.locales import Line, line, render

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
    """Base of every error the bot expects; `user_message` is safe to show in Discord.

    A class's own line is named by `key` in the catalogue (`bot.locales`), so the command's
    edge can say it in the member's language (`localized`); `user_message` reads as English.
    """

    key: ClassVar[str] = "error.generic"

    def __init__(self, message: str | None = None, *, user_message: str | None = None) -> None:
        self.user_message: str = user_message if user_message is not None else line(self.key)
        super().__init__(message or self.user_message)

    def localized(self, locale: str | None) -> str:
        """The member's line in their language (a `Line`), or as given (any other text)."""
        return render(self.user_message, locale)


class InvalidRequestError(BotError):
    """Input refused before any API call, so it cost nothing."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message, user_message=user_message)


class SegmindError(BotError):
    """Anything that went wrong talking to Segmind."""

    #: A short phrase for operators and the CLI, e.g. "the API key was rejected".
    meaning: ClassVar[str] = "the speech service failed"
    key: ClassVar[str] = "error.segmind"
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
        return line(self.key)

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
        if self.upstream_message:
            return line("error.bad_request_said", said=self.upstream_message)
        return line("error.bad_request")


class AuthenticationError(SegmindError):
    meaning = "the API key was rejected"
    operator_problem = True
    key = "error.key_rejected"


class PermissionDeniedError(SegmindError):
    meaning = "the API key lacks permission for this model"
    operator_problem = True
    key = "error.model_forbidden"


class ModelNotFoundError(SegmindError):
    meaning = "model or endpoint not found (check SEGMIND_BASE_URL and SEGMIND_MODEL)"
    operator_problem = True
    key = "error.model_missing"


class OutOfCreditsError(SegmindError):
    meaning = "out of credits or spend limit reached"
    operator_problem = True
    key = "error.out_of_credits"


class RateLimitedError(SegmindError):
    meaning = "rate limited"
    retryable = True
    key = "error.rate_limited"

    #: Seconds to wait from when the answer arrived, if the headers said; else None.
    retry_after: float | None = None


class ServerError(SegmindError):
    meaning = "server error"
    retryable = True
    key = "error.server_error"

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
    key = "error.unexpected_answer"


class BadAudioError(SegmindError):
    """A success status whose body is not audio: an upstream fault, never a file."""

    meaning = "the answer was not audio"
    key = "error.bad_audio"


class SegmindTimeoutError(SegmindError):
    meaning = "timed out"
    retryable = True
    key = "error.timeout"


class SegmindConnectionError(SegmindError):
    meaning = "could not reach Segmind"
    retryable = True
    key = "error.unreachable"


class MethodNotAllowedError(SegmindError):
    meaning = "method not allowed (check SEGMIND_BASE_URL and SEGMIND_API)"
    operator_problem = True
    key = "error.method_refused"


class ModelRetiredError(SegmindError):
    meaning = "the model was retired: set SEGMIND_MODEL to a current one"
    operator_problem = True
    key = "error.model_retired"


class JobFailedError(SegmindError):
    """A 422: the request failed validation upstream (v1), or its v2 job FAILED."""

    meaning = "the request could not be processed"
    key = "error.job_failed"


class JobTimeoutError(SegmindError):
    """An accepted v2 job that did not finish in time: polling stops, nothing is re-submitted."""

    meaning = "the job was accepted but did not finish in time"
    key = "error.job_timeout"


class JobLostError(SegmindError):
    """An accepted v2 job that Segmind kept answering 404 for (never visible, or its result
    gone): polling stops after a bounded number of tries, and nothing is re-submitted, since
    a new submit may be paid a second time."""

    meaning = "the job was accepted but Segmind could not find it"
    key = "error.job_lost"


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
            user_message=line("error.cooldown_seconds", seconds=max(1, round(self.retry_after))),
        )


class QueueFullError(BotError):
    """Too much is already waiting: for this member (`per_user`) or for everyone."""

    def __init__(self, *, per_user: bool, limit: int) -> None:
        self.per_user = per_user
        self.limit = limit
        if per_user:
            key = "error.queue_full_mine_one" if limit == 1 else "error.queue_full_mine_many"
            message: Line = line(key, limit=limit)
        else:
            message = line("error.queue_full")
        super().__init__(message, user_message=message)


class SchedulerClosedError(BotError):
    """The bot is shutting down; the request was never sent, so it cost nothing."""

    key = "error.restarting"


class RequestExpiredError(BotError):
    """A request waited longer than Discord lets the bot answer it."""

    key = "error.expired"


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
            f"daily quota of {limit} reached",
            user_message=self.message(line("error.quota_midnight")),
        )

    def message(self, when: str) -> Line:
        """The member's line, with the reset put as `when` (e.g. a Discord timestamp)."""
        if self.needed > 1:
            return line("error.quota_needs", limit=self.limit, needed=self.needed, when=when)
        return line("error.quota", limit=self.limit, when=when)


# -- operator-facing: settings, storage and audio the bot cannot use ---------------------------


class SettingsError(Exception):
    """Settings that are missing or invalid, named the way the operator writes them."""


class AudioError(Exception):
    """Bytes that were supposed to be audio and are not; the message says why."""


class AudioDeadlineError(AudioError):
    """Decoding was stopped at the call's deadline: a thread cannot be killed, so the decoder
    checks the clock between packets and gives up with this."""


class StorageError(BotError):
    """The database cannot be used as configured."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=line("error.unavailable"))


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
    key = "error.not_in_voice"


class VoicePermissionError(BotError):
    def __init__(self, channel_mention: str) -> None:
        super().__init__(user_message=line("error.voice_permission", channel=channel_mention))


class ChannelFullError(BotError):
    def __init__(self, channel_mention: str) -> None:
        super().__init__(user_message=line("error.channel_full", channel=channel_mention))


class NotConnectedError(BotError):
    key = "error.not_connected"


class NarrationDisabledError(BotError):
    key = "error.narration_disabled"
