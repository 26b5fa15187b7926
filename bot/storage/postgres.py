"""PostgreSQL storage, for bots whose processes (shards on several machines) share settings.

Same semantics as the SQLite backend: a partial update is one `INSERT … ON CONFLICT DO UPDATE`
that sets only the given columns, so concurrent writers of other fields, in this process or
another, never undo each other; PostgreSQL's row locks do the rest. Tasks share an asyncpg
pool, so unlike SQLite they run their statements side by side.

Errors name the server as user@host:port/database, never the password from DATABASE_URL.
Whatever asyncpg raises reaches callers as a StorageError, and an outage is logged once when
it starts and once when it ends (asyncpg's own traceback per failed reconnection is silenced).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import asyncpg

from bot.config import POSTGRES_SCHEMES
from bot.errors import DatabaseURLError, StorageError
from bot.storage import pg_migrations
from bot.storage.models import (
    GuildSettings,
    MemberSettings,
    UsageRecord,
    UsageSummary,
    epoch,
    guild_from_row,
    guild_to_row,
)
from bot.storage.validation import guild_changes, member_changes

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "FAILED",
    "SCHEMES",
    "PostgresStorage",
    "asyncpg_dsn",
    "describe_url",
    "is_postgres_url",
    "scrub",
]

log = logging.getLogger(__name__)

#: URL schemes that mean PostgreSQL (the settings' own check knows them too).
SCHEMES = POSTGRES_SCHEMES

_SUMMARY = """
    COUNT(*),
    COUNT(*) FILTER (WHERE NOT cached AND (status IS NULL OR status NOT BETWEEN 200 AND 299)),
    COALESCE(SUM(audio_seconds), 0.0),
    COALESCE(SUM(cost), 0.0),
    COUNT(*) FILTER (WHERE cached)
"""

#: What a lost or refused connection raises: the database is unavailable, not the query wrong.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
#: What can go wrong while connecting and migrating.
FAILED: tuple[type[BaseException], ...] = (*_UNAVAILABLE, asyncpg.PostgresError)
#: What a connection the server dropped raises mid-statement or when it is handed back: the
#: client's own bookkeeping (InternalClientError) trips over the dead connection too.
_BROKEN: tuple[type[BaseException], ...] = (*_UNAVAILABLE, asyncpg.InternalClientError)
#: Anything asyncpg raises.
_ANY: tuple[type[BaseException], ...] = (*FAILED, asyncpg.InternalClientError)

#: Seconds without a failure, statements succeeding, before an outage is logged as over.
RECOVERED = 1.0

#: asyncpg's pool logs this, with a full traceback, each time it fails to reconnect its idle
#: connection: several times per outage, which the storage already reports once.
_POOL_FLOOR = "Failed to restore the pool connection floor"


class _QuietPoolFloor(logging.Filter):
    """Drops asyncpg's reconnection tracebacks unless its logger is set to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_POOL_FLOOR):
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _quiet_asyncpg() -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(known, _QuietPoolFloor) for known in pool_log.filters):
        pool_log.addFilter(_QuietPoolFloor())


def is_postgres_url(url: str) -> bool:
    scheme, separator, _ = url.strip().partition("://")
    return bool(separator) and scheme.lower().partition("+")[0] in SCHEMES


def describe_url(url: str) -> str:
    """user@host:port/database: enough to find the server, and never the password."""
    user, _, hosts, database, query = _parts(url)
    if not hosts:
        hosts = ",".join(parse_qs(query).get("host", [])) or "localhost"
    database = database or user or "the default database"
    return f"{user + '@' if user else ''}{hosts}/{database}"


def _parts(url: str) -> tuple[str, str, str, str, str]:
    """User, password, hosts, database and query, split by hand: a password with an unencoded
    `/`, `?` or `@` must still land in the password, never in what is shown."""
    _, _, rest = url.strip().partition("://")
    userinfo, _, location = rest.rpartition("@")
    user, _, password = userinfo.partition(":")
    location, _, query = location.partition("?")
    hosts, _, database = location.partition("/")
    return unquote(user), password, hosts, unquote(database), query


def asyncpg_dsn(url: str) -> str:
    """The URL as asyncpg takes it: it knows postgres:// and postgresql:// only, and the
    driver suffix (`postgresql+asyncpg://`) is ours anyway."""
    scheme, _, rest = url.strip().partition("://")
    return f"{scheme.partition('+')[0].lower()}://{rest}"


def scrub(url: str, text: str) -> str:
    """`text` with the URL's password taken out, however it was written."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _secrets(url: str) -> set[str]:
    """The password as written in the URL and decoded, wherever it is given."""
    _, password, _, _, query = _parts(url)
    found = {password, unquote(password), *parse_qs(query).get("password", [])}
    return {secret for secret in found if secret}


class PostgresStorage:
    """`Storage` on an asyncpg pool. `url` is a libpq-style URL (postgresql://user:pw@host/db,
    query parameters such as sslmode included)."""

    def __init__(
        self, url: str, *, max_connections: int = 10, connect_timeout: float = 10.0
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self.where = describe_url(url)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        #: When the current outage began (monotonic), None while the server answers.
        self._down_since: float | None = None
        #: When the last statement failed for want of the server, and when one first
        #: succeeded after it: the outage ends once successes have lasted RECOVERED s.
        self._last_failure = 0.0
        self._answering_since: float | None = None
        #: Outages begun or ended so far: a failure begins one only if nothing changed since
        #: its statement started, so a straggler from before a recovery cannot flip it back.
        self._turns = 0
        _quiet_asyncpg()

    def __repr__(self) -> str:
        return f"PostgresStorage({self.where!r})"

    async def __aenter__(self) -> PostgresStorage:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.max_connections,
                timeout=self.connect_timeout,
            )
        except ValueError:
            # Neither quoted nor chained: asyncpg's parse errors quote pieces of the URL,
            # which may be pieces of the password.
            raise DatabaseURLError(
                f"DATABASE_URL for PostgreSQL at {self.where} could not be parsed; "
                "percent-encode @ : / ? # in the user name and password."
            ) from None
        except FAILED as exc:
            raise StorageError(
                f"Could not connect to PostgreSQL at {self.where}: {self._reason(exc)}"
            ) from None
        try:
            async with pool.acquire() as conn:
                version = await pg_migrations.migrate(conn)
        except FAILED as exc:
            await pool.close()
            raise StorageError(
                f"PostgreSQL at {self.where} could not be brought up to date: {self._reason(exc)}"
            ) from exc
        except Exception:  # A newer database, refused.
            await pool.close()
            raise
        except BaseException:  # Cancelled: do not wait on the server.
            pool.terminate()
            raise
        log.info("Storage ready: PostgreSQL at %s (schema version %d)", self.where, version)
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            return await pg_migrations.schema_version(conn)

    # Members.

    async def get_member(self, user_id: int) -> MemberSettings:
        row = await self._fetchrow("SELECT * FROM member_settings WHERE user_id = $1", user_id)
        return MemberSettings(**dict(row)) if row else MemberSettings.defaults(user_id)

    async def update_member(self, user_id: int, /, **changes: Any) -> MemberSettings:
        checked = member_changes(changes)
        if not checked:
            return await self.get_member(user_id)
        row = await self._upsert(
            "member_settings", "user_id", asdict(MemberSettings.defaults(user_id)), checked
        )
        return MemberSettings(**row)

    async def reset_member(self, user_id: int) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM member_settings WHERE user_id = $1", user_id)

    # Servers.

    async def get_guild(self, guild_id: int) -> GuildSettings:
        row = await self._fetchrow("SELECT * FROM guild_settings WHERE guild_id = $1", guild_id)
        return guild_from_row(dict(row)) if row else GuildSettings.defaults(guild_id)

    async def update_guild(self, guild_id: int, /, **changes: Any) -> GuildSettings:
        checked = guild_changes(changes)
        if not checked:
            return await self.get_guild(guild_id)
        row = await self._upsert(
            "guild_settings",
            "guild_id",
            guild_to_row(asdict(GuildSettings.defaults(guild_id))),
            guild_to_row(checked),
        )
        return guild_from_row(row)

    # Usage.

    async def record_usage(self, record: UsageRecord) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO usage (guild_id, user_id, at, status, latency, audio_seconds, cost,"
                " cached) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                record.guild_id,
                record.user_id,
                record.at,
                record.status,
                float(record.latency),
                float(record.audio_seconds),
                float(record.cost),
                bool(record.cached),
            )

    async def usage(
        self, *, since: datetime, guild_id: int | None = None, user_id: int | None = None
    ) -> UsageSummary:
        epoch(since)  # Refuses a naive datetime, which asyncpg would silently take as UTC.
        where = ["at >= $1"]
        params: list[Any] = [since]
        for column, value in (("guild_id", guild_id), ("user_id", user_id)):
            if value is not None:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        row = await self._fetchrow(
            f"SELECT {_SUMMARY} FROM usage WHERE {' AND '.join(where)}", *params
        )
        assert row is not None  # An aggregate always returns one row.
        return _summary(row.values())

    async def top_users(
        self, guild_id: int, since: datetime, limit: int = 5
    ) -> list[tuple[int, UsageSummary]]:
        if limit < 1:
            raise ValueError("limit must be at least 1.")
        epoch(since)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT user_id, {_SUMMARY} FROM usage WHERE guild_id = $1 AND at >= $2"
                " GROUP BY user_id ORDER BY COUNT(*) DESC, SUM(cost) DESC, user_id LIMIT $3",
                guild_id,
                since,
                limit,
            )
        return [(int(row[0]), _summary(tuple(row.values())[1:])) for row in rows]

    async def daily_usage(self, guild_id: int, since: datetime) -> list[tuple[date, UsageSummary]]:
        epoch(since)
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT (at AT TIME ZONE 'UTC')::date AS day, {_SUMMARY} FROM usage"
                " WHERE guild_id = $1 AND at >= $2 GROUP BY day ORDER BY day",
                guild_id,
                since,
            )
        return [(row[0], _summary(tuple(row.values())[1:])) for row in rows]

    async def forget_member(self, user_id: int) -> int:
        deleted = 0
        async with self._connection() as conn, conn.transaction():
            for table in ("member_settings", "usage"):
                status = await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)
                deleted += int(status.rpartition(" ")[2])  # "DELETE 3"
        return deleted

    # Plumbing.

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection; whatever asyncpg raises becomes a StorageError naming the
        server. The pool replaces connections the server dropped, so a restarted server is
        picked up."""
        pool = self._pool
        if pool is None:
            raise StorageError("Storage is not connected: call connect() first.")
        turns = self._turns
        try:
            conn = await pool.acquire()
        except _ANY as exc:  # Reconnecting: the server, or the database, is gone.
            raise self._lost(exc, turns) from exc
        try:
            yield conn
        except _BROKEN as exc:
            raise self._lost(exc, turns) from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(
                f"PostgreSQL at {self.where} refused a statement: {self._reason(exc)}"
            ) from exc
        else:
            self._answered()
        finally:
            await self._release(pool, conn)

    async def _release(
        self, pool: asyncpg.Pool[asyncpg.Record], conn: PoolConnectionProxy[asyncpg.Record]
    ) -> None:
        """Hand the connection back. asyncpg raises here when the server dropped it; it has
        already discarded it then, and raising would replace the statement's own outcome
        (its StorageError, or its result) with a raw asyncpg error."""
        try:
            await pool.release(conn)
        except _ANY as exc:
            log.debug(
                "Dropped a dead connection to PostgreSQL at %s: %s", self.where, self._reason(exc)
            )

    def _lost(self, exc: BaseException, turns: int) -> StorageError:
        error = self._unavailable(exc)
        self._last_failure = time.monotonic()
        self._answering_since = None
        if self._down_since is None and turns == self._turns:
            self._down_since = self._last_failure
            self._turns += 1
            log.warning("%s; storage calls fail until it answers again.", error)
        return error

    def _answered(self) -> None:
        """Ends an outage once statements have succeeded, and none failed, for RECOVERED s:
        a server shutting down still answers some statements between the failures."""
        if self._down_since is None:
            return
        now = time.monotonic()
        if self._answering_since is None:
            self._answering_since = now
        if now - self._last_failure >= RECOVERED:
            log.info(
                "PostgreSQL at %s answers again, after %.1f s unavailable.",
                self.where,
                self._answering_since - self._down_since,
            )
            self._down_since = self._answering_since = None
            self._turns += 1

    async def _fetchrow(self, sql: str, *params: Any) -> asyncpg.Record | None:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *params)

    async def _upsert(
        self, table: str, key: str, defaults: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One statement that inserts the defaults plus `changes`, or on an existing row sets
        only `changes`, and returns the row as stored: a concurrent update of other fields is
        never overwritten. Column names come from the checks, never from callers."""
        row = {**defaults, **changes}
        columns = ", ".join(row)
        marks = ", ".join(f"${n}" for n in range(1, len(row) + 1))
        assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in changes)
        stored = await self._fetchrow(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            f" ON CONFLICT ({key}) DO UPDATE SET {assignments} RETURNING *",
            *row.values(),
        )
        assert stored is not None  # RETURNING on an upsert always yields the row.
        return dict(stored)

    def _unavailable(self, exc: BaseException) -> StorageError:
        return StorageError(f"PostgreSQL at {self.where} is unavailable: {self._reason(exc)}")

    def _reason(self, exc: BaseException) -> str:
        return scrub(self._dsn, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _summary(values: Iterable[Any]) -> UsageSummary:
    calls, failures, audio, cost, cached = values
    return UsageSummary(int(calls), int(failures), float(audio), float(cost), int(cached))
