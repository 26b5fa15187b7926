"""Daily quotas counted from the moment a call is accepted, not once it is stored.

Storage learns of a paid call only when it has been made and its usage record written, ~20 s
after it was accepted. Counting storage alone let a burst through: eight narrated messages
arriving together, or a `/speak` each time the cooldown ends, were all admitted before the
first was stored. So this ledger holds, per member and server, what is accepted but not yet in
storage: calls reserved when a request is admitted and not yet settled, and calls made and
paid whose usage records are still being written. A request passes if

    paid calls stored today + outstanding + calls it needs <= quota

and is then reserved, with no await between the count and the reservation. Each call is
counted exactly once on its way: reserved → settled, when its ticket ends (free: from the
cache, shared, failed, withdrawn; paid: `paid` counted it in that same step) → written
(`writing`). A paid call's record and a quota check for the same member take the same lock
(`locked`), so a check never reads storage before a record is written and the ledger after
it was taken off. A record that cannot be written yet (the database is restarting) stays
counted while it is held for retry.

Not kept per day: a call outstanding at midnight UTC is stored when it is paid, on the new
day, so it counts against the new day's quota. Per process, like the scheduler (a server's
members are served by the one process that holds its shard). Nothing is kept for a member
with nothing outstanding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["QuotaLedger", "Reservation"]

#: (server, member): a quota is per member in one server; None is a DM or the terminal.
Key = tuple[int | None, int]


@dataclass(eq=False)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class QuotaLedger:
    """What each member has outstanding against their quota in this process; see the module
    docstring. All of it runs on the event loop; nothing here is thread-safe."""

    def __init__(self) -> None:
        self._outstanding: dict[Key, int] = {}
        self._locks: dict[Key, _KeyLock] = {}

    def __len__(self) -> int:
        """Members with anything outstanding (the ledger forgets the rest)."""
        return len(self._outstanding)

    def outstanding(self, guild_id: int | None, user_id: int) -> int:
        """Calls accepted or paid for this member that storage does not count yet."""
        return self._outstanding.get((guild_id, user_id), 0)

    @contextlib.asynccontextmanager
    async def locked(self, guild_id: int | None, user_id: int) -> AsyncIterator[None]:
        """One check or paid record at a time per member: a record written while a check
        reads storage could be missed by the read and already taken off the ledger."""
        key = (guild_id, user_id)
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    def reserve(self, guild_id: int | None, user_id: int, calls: int) -> Reservation:
        """Count `calls` now; the caller checked the quota under `locked`."""
        key = (guild_id, user_id)
        self._add(key, calls)
        return Reservation(self, key, calls)

    def paid(self, guild_id: int | None, user_id: int) -> None:
        """A call was made and paid for this member; counted until `writing` its record ends.

        Told before the call's result is delivered, so the reservation it settles may be
        given back at once without the call going uncounted for a moment.
        """
        self._add((guild_id, user_id), 1)

    @contextlib.asynccontextmanager
    async def writing(self, guild_id: int | None, user_id: int) -> AsyncIterator[None]:
        """Write a paid call's record inside this: once it is in storage, `paid`'s count is
        taken off, before any check for the member reads again. A write that fails (or is
        cancelled) leaves the call counted: its record is held for another try, and whoever
        gives it up for good tells `give_back`."""
        async with self.locked(guild_id, user_id):
            yield
            self.give_back((guild_id, user_id), 1)

    def _add(self, key: Key, calls: int) -> None:
        if calls > 0:
            self._outstanding[key] = self._outstanding.get(key, 0) + calls

    def give_back(self, key: Key, calls: int) -> None:
        """Uncount `calls` (a `Reservation` settling); a member at zero is forgotten."""
        left = self._outstanding.get(key, 0) - calls
        if left > 0:
            self._outstanding[key] = left
        else:
            self._outstanding.pop(key, None)


class Reservation:
    """An admitted request's calls, counted against the member's quota until each is settled.

    The stream that makes the request gives one back per chunk as that chunk settles (see
    `SpeechStream`); an admission that is never started gives back the whole of it. A
    reservation with no ledger (a manager, a server without a quota) holds nothing and costs
    nothing.
    """

    __slots__ = ("_key", "_ledger", "held", "taken")

    def __init__(self, ledger: QuotaLedger | None = None, key: Key | None = None, calls: int = 0):
        self._ledger = ledger
        self._key = key
        #: Calls still counted.
        self.held = calls if ledger is not None else 0
        #: Handed to a stream, which settles it chunk by chunk from then on.
        self.taken = False

    def __repr__(self) -> str:
        return f"<Reservation {self._key} held={self.held} taken={self.taken}>"

    def release(self, calls: int = 1) -> None:
        """Give back `calls` (never more than are held: giving back twice is harmless)."""
        calls = min(calls, self.held)
        if calls <= 0 or self._ledger is None or self._key is None:
            return
        self.held -= calls
        self._ledger.give_back(self._key, calls)

    def take(self) -> Reservation:
        """Hand it to the stream that spends it; an admission is started once."""
        if self.taken:
            raise RuntimeError("this admission was already started")
        self.taken = True
        return self

    def abandon(self) -> None:
        """Give everything back unless a stream took it (then the stream settles it)."""
        if not self.taken:
            self.release(self.held)
