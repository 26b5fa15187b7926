"""The request scheduler: every speech call in the bot goes through one paced, fair queue.

Import from here; the modules behind it are parts of one whole:

* `core`: the `Scheduler` itself (the public API and the dispatcher), on `base` (its parts)
  and `failures` (what a failed call leads to: retry, 429 pause, halt);
* `ticket`: a `Ticket`, as the member's command and the scheduler see it;
* `queue`: the fair queue (round-robin per member, a front lane for 429s and retries);
* `window`: the rate window (sliding log of starts, the rate in force, the 429 pause);
* `learn`: the key's real limit, learned from 429s and their absence;
* `deadline`: a long 429 ends at once the requests that cannot wait for it;
* `plan`: places, ETAs and concurrency; `breaker`: the halt on operator problems;
  `config`: the knobs.
"""

from __future__ import annotations

from bot.synthesis.scheduler.config import Clock, MonotonicClock, SchedulerConfig
from bot.synthesis.scheduler.core import Scheduler, SchedulerStats, Synthesize
from bot.synthesis.scheduler.ticket import Attempt, Ticket, TicketState

__all__ = [
    "Attempt",
    "Clock",
    "MonotonicClock",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "Synthesize",
    "Ticket",
    "TicketState",
]
