"""Settings from the environment and an optional `.env` file, built on demand, never at import.

Secrets are `SecretStr`, so printing or logging the settings shows `**********`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import SettingsError
from bot.speech.voices import DEFAULT_VOICE, get_voice

__all__ = [
    "DEFAULT_NAMESPACE",
    "ENV_EXAMPLE",
    "POSTGRES_SCHEMES",
    "Settings",
    "database_url_problem",
    "load_settings",
    "namespace_problem",
    "require",
]

ENV_EXAMPLE = ".env.example"
#: URL schemes that mean PostgreSQL; `postgresql+asyncpg://` is SQLAlchemy's spelling.
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})
#: `REDIS_KEY_PREFIX`'s default: the keys every bot wrote before it could be set.
DEFAULT_NAMESPACE = "tts"
#: Never a brace (it would move keys out of their hash slot), a space, nor anything else odd.
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class Settings(BaseSettings):
    """Everything an operator can set; see `.env.example` for the explanation of each."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        # `NAME=` (an uncommented `.env.example` line, or `docker run --env-file`) means
        # "not set": the default applies, rather than "" failing as an integer.
        env_ignore_empty=True,
    )

    # Secrets.
    discord_token: SecretStr | None = None
    segmind_api_key: SecretStr | None = None

    # The speech API.
    segmind_base_url: str = "https://api.segmind.com/v1"
    segmind_model: str = "gemini-2.5-flash-tts"
    segmind_api: Literal["v1", "v2"] = "v1"
    segmind_job_timeout: float = Field(600.0, gt=0, le=3600)
    segmind_rpm: int = Field(5, ge=1, le=10_000)
    #: Seconds over which SEGMIND_RPM counts: Segmind's minute; tests shorten it.
    segmind_rate_window: float = Field(60.0, ge=0.5, le=3600)
    request_timeout: float = Field(90.0, gt=0, le=600)
    connect_timeout: float = Field(10.0, gt=0, le=120)
    max_attempts: int = Field(0, ge=0, le=1000)
    backoff_base: float = Field(1.0, ge=0, le=60)
    backoff_max: float = Field(60.0, ge=0, le=900)
    user_cooldown: float = Field(5.0, ge=0, le=3600)
    max_waiting_per_user: int = Field(3, ge=1, le=50)
    max_queue: int = Field(200, ge=1, le=10_000)
    max_concurrency: int = Field(100, ge=1, le=1000)

    # What members may ask for.
    max_text_length: int = Field(2000, ge=1, le=20_000)
    default_voice: str = DEFAULT_VOICE
    default_temperature: float = Field(0.4, ge=0, le=2)
    chunk_chars: int = Field(500, ge=50, le=20_000)
    first_chunk_chars: int = Field(200, ge=20, le=20_000)
    chunk_parallelism: int = Field(2, ge=1, le=10)

    # Cost.
    price_per_call: float = Field(0.005, ge=0, le=100)
    cache_enabled: bool = True
    cache_memory_mb: int = Field(64, ge=1, le=16_384)
    cache_disk_mb: int = Field(512, ge=0, le=1_048_576)
    #: The clips every process shares in Redis (with REDIS_URL), by the bot's own count.
    cache_shared_mb: int = Field(256, ge=0, le=1_048_576)

    # Operation.
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_port: int | None = Field(None, ge=1, le=65_535)
    metrics_host: str = "127.0.0.1"
    data_dir: Path = Path("data")
    #: May carry a PostgreSQL password: kept out of the settings' repr.
    database_url: str = Field("", repr=False)
    #: Redis shared by every process on the API key (may carry a password: out of the repr).
    redis_url: str = Field("", repr=False)
    #: Starts every Redis key the bot writes: two bots on one Redis use two prefixes.
    redis_key_prefix: str = DEFAULT_NAMESPACE

    # Discord.
    dev_guild_id: int | None = None
    discord_api_base_url: str | None = None
    alert_channel_id: int | None = None
    sharded: bool = False
    #: Shards across processes: the total, and the ones this process runs ("0,1").
    shard_count: int | None = Field(None, ge=1, le=100_000)
    shard_ids: Annotated[tuple[int, ...], NoDecode] = ()
    #: Seconds a shard's lease in Redis outlives its process (SHARD_IDS with REDIS_URL): how long
    #: a process restarted after a crash waits before it may take its shards back.
    shard_lease_ttl: float = Field(30.0, ge=3, le=600)
    #: Seconds discord.py waits after the last server arrives at login before the bot is ready
    #: (its default, 2 s, covers Discord sending thousands of servers; a small bot may lower it).
    guild_ready_timeout: float = Field(2.0, ge=0, le=60)
    shutdown_grace: float = Field(5.0, ge=0, le=120)
    shutdown_timeout: float = Field(8.0, ge=1, le=600)

    # Voice.
    narration_enabled: bool = True
    #: When narration is behind, a member's next message joins their waiting one (one call).
    narration_merge: bool = True
    voice_idle_timeout: float = Field(300.0, gt=0, le=86_400)
    voice_max_queue: int = Field(50, ge=1, le=1000)
    voice_reconnect_timeout: float = Field(30.0, gt=0, le=600)
    #: Seconds a message waits for a Stage moderator to invite the bot (`bot.playback.stage`);
    #: at most 10 minutes, so a /speak member can still be told within the reply's 15.
    voice_stage_wait: float = Field(300.0, gt=0, le=600)

    @field_validator("segmind_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("discord_api_base_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _http_url(value)

    @field_validator("default_voice")
    @classmethod
    def _known_voice(cls, value: str) -> str:
        return get_voice(value).name

    @field_validator("default_temperature", "request_timeout")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("redis_key_prefix")
    @classmethod
    def _redis_key_prefix(cls, value: str) -> str:
        value = value.strip()
        problem = namespace_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """Refused here, with the other settings, so every command (not only `run`, after the
        Discord login) says at once that no backend takes it."""
        value = value.strip()
        problem = database_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            return tuple(int(part) for part in parts if part)
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        if self.shard_ids:
            if self.shard_count is None:
                raise ValueError("SHARD_IDS needs SHARD_COUNT (the total across processes)")
            bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if bad or len(set(self.shard_ids)) != len(self.shard_ids):
                raise ValueError(
                    f"SHARD_IDS must be distinct shard numbers from 0 to {self.shard_count - 1}"
                )
        return self

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level


def _http_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def namespace_problem(namespace: str) -> str | None:
    """Why `namespace` cannot start Redis keys (REDIS_KEY_PREFIX), phrased to follow its name;
    None if it can."""
    if _NAMESPACE.fullmatch(namespace):
        return None
    return (
        "must be 1 to 64 letters, digits, '.', '_', '-' or ':', starting with a letter or "
        "digit (no spaces or braces)"
    )


def database_url_problem(url: str) -> str | None:
    """Why no backend takes DATABASE_URL, phrased to follow its name; None if one does.

    Never quotes the URL: a PostgreSQL one may carry a password.
    """
    url = url.strip()
    if not url:
        return None
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme.partition("+")[0] in POSTGRES_SCHEMES:
        return None
    if separator and scheme == "sqlite" and (not rest or rest.startswith("/")):
        return None
    shown = f" ({scheme}://)" if separator and scheme.isalnum() else ""
    return (
        f"not a database URL the bot supports{shown}: use sqlite:///path/to/file.db, "
        "postgresql://user:password@host/database, or leave it empty for bot.db in DATA_DIR"
    )


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build settings from the environment (and `env_file` if it exists), then `overrides`."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        stop = "" if problems.endswith(("?", "!")) else "."
        raise SettingsError(f"Invalid settings — {problems}{stop} See {ENV_EXAMPLE}.") from None


def _problem(error: ErrorDetails) -> str:
    """One setting's problem in the validator's own words: pydantic prefixes "Value error, "
    to them, and a sentence's full stop would double the one that ends the list."""
    name = str(error["loc"][0]).upper() if error["loc"] else "settings"
    cause = (error.get("ctx") or {}).get("error")
    text = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
    return f"{name}: {text.strip().rstrip('.')}"


def require(settings: Settings, *names: str) -> None:
    """Fail with every missing setting named at once, so the operator fixes them in one go."""
    missing = [name.upper() for name in names if not _present(getattr(settings, name))]
    if missing:
        raise SettingsError(
            f"Missing setting{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
            f"Set {'them' if len(missing) > 1 else 'it'} in the environment or in a .env file "
            f"(copy {ENV_EXAMPLE} to .env and fill it in)."
        )


def _present(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value().strip())
    return value is not None and value != ""
