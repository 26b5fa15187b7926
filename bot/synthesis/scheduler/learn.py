"""Learning the API key's real limit, so a mistyped `SEGMIND_RPM` cannot keep half the calls 429.

The operator says how many calls a minute the key allows; the server knows. When an owner types
50 on a 5-a-minute key, pacing at 50 gets 45 of every 50 calls refused, window after window.
So the rate the scheduler paces at (`rpm`) is learned, between 1 and the configured rpm:

* **What the server let through.** Each start is logged with its outcome. On a 429 the
  refused call's window (`window` before its start, up to now: what the server counts) is
  counted: the calls in it that were not refused (a call still in flight counts as accepted
  until its own 429 says otherwise) are what the server let through, which is the key's limit
  (or our share of it, if another client uses the key too).
* **A stray 429 is forgiven once.** The first refusal of a congestion event (the refused call
  started after the previous event began) at a rate is blamed on timing or a glitch, unless
  one already was within two spans: the pause is honoured, the rate kept, the refused call's
  slot given back. So a correct rate is never lowered by a single stray 429, nor reported.
  (A refusal that brings the rate down to the count gives its slot back too: the server did
  not count it, and at that rate the window must hold what the server holds, or a failed
  probe would cost a slot besides its refusal.)
* **Timing explains a few refusals only in a full window.** A call paced to the very edge of
  the window can arrive while the server still counts a late arrival from the window before
  (a cold burst opens 50 connections one after another; arrivals jitter), and a burst can get
  a few refusals that way: more refusals of the same event are blamed on timing too, up to
  rpm // TIMING_SHARE, but only while the calls let through in the refused call's span come
  within that many of the rate, the only case in which a late arrival tips the server over.
  Several refusals in a window we had filled only to 10 of 50 are the limit, and the rate
  drops to what was let through within that first event (the first burst of a mistyped
  SEGMIND_RPM teaches the real limit before the next window, not after it).
* **Decrease, from what the server accepted.** An event that is the limit cuts the rate to
  the count. A new event (a second within two spans) cuts it by no more than the
  multiplicative `penalty_factor` (so two stray 429s when we made two calls do not drop a
  50-a-minute key to 1), unless the count is strong evidence: the rate was holding calls back
  (there was demand beyond what went out) and the server let through about as many as in the
  event before, the same limit measured twice. The other refusals of the same event only
  tighten the rate to the count, without compounding the factor: while they come back the
  count falls, so 45 refusals of a 50-call burst on a 5-a-minute key bring the rate to 5
  within that one burst, and never below what the server let through.
* **Increase, slowly and only with evidence.** After `hold` seconds at a level without a
  decrease, and only if the rate actually held starts back in that time (so an idle bot does
  not drift back up to a wrong figure), the rate rises by max(1, rpm // 4), toward the
  configured rpm. That probe costs a 429 when the limit really is lower: a refusal while the
  server had let through no more than the level before the probe answers it (timing cannot
  explain a refusal in a window filled no further than a level the server already refused
  past), and puts the rate back there. Each failed probe doubles `hold` (from
  `penalty_seconds`, up to `MAX_HOLD_WINDOWS` windows), so probes get rarer: on a 5-a-minute
  key configured at 50, a few calls in a hundred after the first window. A probe that holds
  resets the next hold.
* **Telling the operator once.** A lowered rate that has held for a whole span (or that a
  failed probe confirmed) is reported once: the scheduler logs one WARNING and calls
  `on_limit_learned`.

With a cluster gate (`alone=False`) this process's calls are only its share of the key's: how
full its own window was says nothing of the key's, so a burst's few refusals are blamed on
timing however few calls this process made, and a second event is cut by the factor at most
(this process's count may be a small share of what the key let through).

The cluster has one rate, held in Redis: while its shared window answers (`shared`), the
rate is the cluster's (`follow`), and what this process learns is shared with the others.
While Redis is out of reach, each process paces alone, and the other processes' calls,
still made on the key, come back to it as 429s. So each starts alone at its share of the rate
(`part`: the rate over how many processes shared the key lately, see `share.py`) and probes
upward from it as from any lowered rate. That share, and a limit lowered then, are
**provisional**: the key's limit as one process's share of it. It paces that process until
the shared window answers again, and is then dropped for the cluster's rate (`rejoin`); it
is never shared nor reported. For one window after that, the key still counts calls the
processes paced alone: each keeps pacing at its rate from alone for that window (the shared
window never saw those calls), and a refusal whose window reaches back into the outage is no
evidence about the cluster's rate either: its pause is honoured, the rate kept.

Pure bookkeeping: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from bot.synthesis.scheduler.config import SchedulerConfig

__all__ = ["MAX_HOLD_WINDOWS", "TIMING_SHARE", "LimitLearner"]

#: Failed probes double the wait before the next one, up to this many windows.
MAX_HOLD_WINDOWS = 32
#: Up to rpm // TIMING_SHARE refusals (at least 1) in one event may be blamed on timing.
TIMING_SHARE = 10


@dataclass(slots=True)
class _Start:
    at: float
    refused: bool = False


class LimitLearner:
    """The rate to pace at: the configured rpm, lowered by 429s and raised back by quiet."""

    def __init__(self, config: SchedulerConfig, *, alone: bool = True) -> None:
        self._config = config
        self._alone = alone  # no other process shares the key through a cluster gate
        self.rpm = config.rpm
        self._starts: deque[_Start] = deque()  # starts within two spans, with their outcome
        self._running: dict[int, _Start] = {}  # ticket id -> its current attempt's start
        self._event_at = -math.inf  # when the latest congestion event began
        self._event_refused = 0  # refusals counted in it
        self._event_excused = False  # blamed on timing so far
        self._event_accepted: int | None = None  # what the server let through in it
        self._pressed_at = -math.inf  # when the rate last held a start back
        self._excused = False  # a refusal at the current rate was already blamed on timing
        self._last_refusal = -math.inf
        self._changed_at = -math.inf
        self._hold = config.penalty_seconds
        self._probing = False  # raised since the last decrease, not yet confirmed
        self._probed_from = 0  # the level the latest probe raised the rate from
        self._saturated = False  # the rate held back a start since the last change
        self._reported = False
        self.report: int | None = None  # a confirmed limit below the configured, until taken
        #: The cluster's shared window is in force (always True alone: nothing to share).
        self.shared = True
        #: The rate was changed while the shared window was out of reach (see the docstring).
        self.provisional = False
        self._shared_since = -math.inf  # when the shared window last came back
        #: Until then the rate paced alone is kept, the shared window back (see `rejoin`).
        self._settled_at = -math.inf
        self._long_hold = False  # the hold is a share's first (see `part`)

    @property
    def hold(self) -> float:
        """Seconds at a level, without a decrease, before the rate may rise again."""
        return self._hold

    def started(self, ticket_id: int, now: float) -> None:
        """A call for `ticket_id` starts at `now`."""
        start = _Start(now)
        self._starts.append(start)
        self._running[ticket_id] = start
        horizon = now - 2 * self._config.span
        while self._starts and self._starts[0].at <= horizon:
            self._starts.popleft()

    def began(self, ticket_id: int, now: float) -> None:
        """The call for `ticket_id`, launched earlier, really begins at `now`."""
        start = self._running.get(ticket_id)
        if start is not None:
            start.at = now

    def ended(self, ticket_id: int) -> None:
        """The call ended with anything but a 429: it was not refused by the limit."""
        self._running.pop(ticket_id, None)

    def held_back(self, now: float) -> None:
        """The rate (not the queue, concurrency or a pause) kept a start waiting at `now`."""
        self._saturated = True
        self._pressed_at = now

    def refused(self, ticket_id: int, now: float) -> bool:
        """The call for `ticket_id` was answered 429 at `now`; True to give its slot back.

        Blamed on timing, the rate is kept; otherwise it counts against the rate, which may be
        lowered (read `rpm`). Either way the server did not count the refused call: its slot
        is given back (True) if the rate now allows no more than what the server let through
        (or timing is blamed), and kept (False) while the rate stands above that count, so the
        refusals slow what follows until a later one brings the rate down to the count.
        """
        start = self._running.pop(ticket_id, None)
        if start is None:
            return False
        start.refused = True
        if self.shared and start.at - self._config.window < self._shared_since:
            return True  # the server still counts calls paced alone: no cluster evidence
        accepted = self._accepted(start.at - self._config.window)
        if now - self._last_refusal > 2 * self._config.span:
            self._excused = False  # two quiet spans: the next lone refusal is timing again
        self._last_refusal = now
        allowance = max(1, self.rpm // TIMING_SHARE)
        if start.at > self._event_at:  # a new congestion event
            previous = self._event_accepted
            self._event_at = now
            self._event_refused = 1
            self._event_accepted = accepted
            # A probe refused before the server let through more than the level it left is
            # answered, not unlucky: timing needs a window filled past that level.
            answered = self._probing and accepted <= self._probed_from
            self._event_excused = not (self._excused or answered)
            if self._event_excused:  # first refusal at this rate: blame timing, once
                self._excused = True
                return True
            pressed = self._pressed_at > start.at - self._config.window
            measured = previous is not None and accepted >= previous - allowance
            if self._alone and pressed and measured:
                target = accepted  # the same limit, measured twice under demand
            else:
                target = max(accepted, math.floor(self.rpm * self._config.penalty_factor))
        else:  # another refusal of the same event
            self._event_refused += 1
            if self._event_excused:
                full = self._accepted(start.at - self._config.span) >= self.rpm - allowance
                if (full or not self._alone) and self._event_refused <= allowance:
                    return True
                self._event_excused = False  # too many refusals for timing: it is the limit
            target = accepted  # only ever tighten toward what the server let through
        target = max(1, min(self.rpm, target))
        if self._probing:
            # The raised level was refused: the limit is confirmed, probe less often.
            self._probing = False
            cap = MAX_HOLD_WINDOWS * self._config.window
            self._hold = min(cap, 2 * self._hold)
            known = self.shared and not self.provisional  # not a rate from alone
            if not self._reported and target < self._config.rpm and known:
                self._reported = True
                self.report = target
        if target < self.rpm:
            self.rpm = target
            self._changed_at = now
            self._saturated = False
            self._excused = False
            self.provisional = self.provisional or not self.shared
        return self.rpm <= accepted

    def _accepted(self, since: float) -> int:
        """Calls started after `since` that the server did not refuse (in flight included)."""
        return sum(1 for s in self._starts if s.at > since and not s.refused)

    def follow(self, rpm: int, now: float) -> bool:
        """The cluster's shared window paces every process at `rpm`: pace there too.

        Lower, another process learned the key refuses calls past it; higher, one probed
        upward, or the cluster's learned limit lapsed. Either way it counts as a change here
        (the hold starts now). True if the rate changed.
        """
        rpm = max(1, min(self._config.rpm, rpm))
        if now < self._settled_at:  # still pacing at the rate from alone (see `rejoin`),
            if rpm >= self.rpm:  # unless the cluster's is lower
                return False
        else:
            self.provisional = False
        if rpm == self.rpm:
            return False
        self.rpm = rpm
        self._changed_at = now
        self._saturated = False
        return True

    def part(self, share: int | None = None, now: float = 0.0, hold: float = 0.0) -> None:
        """The shared window cannot be reached: what is learned from now on is provisional.

        `share` is this process's share of the rate (`share.py`): paced there, alone, from
        `now`, provisionally too, and probed upward from after `hold` seconds (at least the
        usual hold), so a process whose peers are gone as well regains the key. Its peers,
        if they are there, start theirs at the same moment: probing as soon as the usual
        hold allows, they would all probe together, each past its share, and the key refuse
        them all; held as long as the count of peers is remembered, the probes come only
        when the process would have taken the whole key anyway.
        """
        self.shared = False
        if share is None or share >= self.rpm:
            return
        self.rpm = max(1, share)
        self.provisional = True
        self._changed_at = now
        self._saturated = False
        self._excused = False
        self._probing = False
        self._hold = max(hold, self._config.penalty_seconds)
        self._long_hold = True  # the probes after the first come at the usual pace

    def rejoin(self, rpm: int, now: float) -> bool:
        """The shared window answers again, pacing the cluster at `rpm`: drop what was learned
        alone (a report not yet taken, a probe, a lengthened hold) and follow it.

        A rate paced alone (a share, a limit learned alone) is kept one more window first: the
        key still counts the calls each process made alone, which the shared window never saw
        (a restarted Redis saw none at all), so the whole rate at once would go out on top of
        them; and each process starting the window again at its share starts it evenly split.
        True if the rate changed.
        """
        self.shared = True
        self._shared_since = now
        if self.provisional:  # until `follow` takes the cluster's rate
            self.report = None
            self._probing = False
            self._hold = self._config.penalty_seconds
            self._long_hold = False
            self._settled_at = now + self._config.span
            return False
        return self.follow(rpm, now)

    def hold_from(self, moment: float) -> None:
        """Count the hold from `moment` (the end of a 429 pause): paused time proves nothing."""
        self._changed_at = max(self._changed_at, moment)

    def tick(self, now: float) -> bool:
        """Raise the rate if it held long enough with demand; True if it changed.

        Also reports (once) a lowered rate that has held for a whole span: by then the
        refusals that lowered it have all come back, so the figure is the settled one.
        """
        if now < self._settled_at:
            return False  # just back from an outage: the cluster's rate comes next
        settled = now - self._changed_at >= self._config.span
        known = self.shared and not self.provisional  # not a rate from alone
        if not self._reported and self.rpm < self._config.rpm and settled and known:
            self._reported = True
            self.report = self.rpm
        if self.rpm >= self._config.rpm or now - self._changed_at < self._hold:
            return False
        if not self._saturated:
            return False
        if self._probing or self._long_hold:  # the last probe held: the next may come sooner
            self._hold = self._config.penalty_seconds
            self._long_hold = False
        self._probed_from = self.rpm
        self.rpm = min(self._config.rpm, self.rpm + max(1, self.rpm // 4))
        self._probing = True
        self._excused = False
        self._changed_at = now
        self._saturated = False
        return True

    def next_tick(self) -> float | None:
        """When `tick` might next raise the rate (None: not below the configured rpm)."""
        if self.rpm >= self._config.rpm:
            return None
        return self._changed_at + self._hold
