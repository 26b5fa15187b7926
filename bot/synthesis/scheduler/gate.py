"""The cluster gate: what the scheduler asks before each start when several processes share a key.

One process paces itself with its own rate window (`window.py`). Several processes on one API
key (shards across processes, or machines) would each do so and together make N times the
allowed calls, so with a gate every start also needs a slot from a window they all share
(`bot.synthesis.cluster`, in Redis). The scheduler only knows this protocol, so it runs the
same with or without a cluster, and tests drive it without Redis internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["LOCAL_SLOT", "REDIS_BUDGET", "Admission", "Gate"]

#: Seconds any one Redis round trip on a member's path may take (the shared window, the
#: cache tier, the calls in flight) before this process does without it: well inside the 3 s
#: Discord gives an interaction, since a hung Redis must never cost a member their answer.
REDIS_BUDGET = 2.0
#: The "slot" of a start admitted by this process's own window while the shared one is
#: unreachable: nothing in the shared window to give back.
LOCAL_SLOT = ""


@dataclass(frozen=True, slots=True)
class Admission:
    """The shared window's answer: a slot (the call may start), or how long to wait."""

    #: The slot taken, to give back if the call does not happen; None: not admitted.
    slot: str | None
    #: Seconds before asking again (0 when admitted).
    wait: float = 0.0
    #: The rate the cluster paces at: the asked rate (SEGMIND_RPM), or the lower one the
    #: processes learned, the same for every process.
    rpm: int | None = None
    #: True if refused because a 429 pause is in force cluster-wide (`wait` is its rest).
    paused: bool = False
    #: Refused by a full window: how many more of its starts this process holds than an even
    #: share among the processes holding any (0 if no more), so it lets the others go first.
    ahead: float = 0.0
    #: Processes that asked for a slot within the last two spans, this one included (None:
    #: not counted): its share of the key, should Redis stop answering.
    sharers: int | None = None


class Gate(Protocol):
    """A sliding window shared by every process on the key, with its pause and learned rate."""

    async def admit(self, rpm: int) -> Admission:
        """Take a slot if fewer than `rpm` calls (or the learned rate) started in the span."""
        ...

    async def give_back(self, slot: str) -> None:
        """A slot taken for a call that never went out, or a refusal blamed on timing."""
        ...

    async def pause(self, seconds: float) -> None:
        """A 429: every process waits `seconds` (a later end never shortened)."""
        ...

    async def learned(self, rpm: int, hold: float) -> None:
        """The key refuses calls past `rpm`: every process paces at most there for `hold` s."""
        ...

    async def raised(self, was: int, rpm: int, hold: float) -> None:
        """A probe upward: the cluster paces at `rpm` for `hold` s, if it still paced at `was`
        (a decrease or another probe since wins)."""
        ...
