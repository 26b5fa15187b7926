"""How close the scheduler runs to the API key's limit, at the real ratio of window to latency.

Members ask for clips through the real `Scheduler` and `SegmindClient` (one attempt per call)
against the fake Segmind server in a process of its own (`bench.scheduler_server`), which
enforces its own sliding-window limit and answers 429 past it. By default everything is scaled
from the real 60 s window and 18 s calls down by 10 (6 s, 1.8 s), and 10 members × 10 clips all
ask at once: a burst of 100 at 50 a window, as in issue 11, point 11. Every time-based setting
of the scheduler (queue timeout, back-off) is scaled the same way. Nothing is dropped on
purpose, so "lost" must be 0.

    python -m bench.scheduler_throughput [--users N] [--requests M] [--rpm R] [--window S]
        [--latency L] [--key-rpm K] [--no-reset] [--per-user P] [--cooldown S] [--margin S]
    python -m bench.scheduler_throughput --mistyped [--window S --latency L]

Default targets: makespan ≤ 1.05 × the best the limit allows (printed beside it), ≥ 95 % of
the limit over the steady part, < 1 % of calls answered 429, nothing lost.

`--key-rpm K` makes the server allow only K per window while the scheduler is told R (an
owner who typed 50 on a 5-a-minute key); `--no-reset` strips the 429s' reset headers. Then the
targets are: < 10 % of calls after the first window answered 429, goodput (calls served after
the first window, over what the key allows in that time) ≥ 90 %, nothing lost.

`--mistyped` prints those figures as a table, for 10 members × 3 requests on a 5-a-window key
told 50: queued all at once (as `--key-rpm` does) and queued the way the bot's defaults let
members (3 waiting each, a 5 s cooldown, scaled), where the first burst is one call per member
and the rest queue up behind its pause; each with and without reset headers (four runs of
about 75 s at the default 12 s window). Targets as above, and the operator told once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bench.scheduler_server import KEY, ServerProcess, best_makespan, percentile
from bot.errors import BotError, CooldownError, QueueFullError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.client import SegmindClient
from bot.synthesis.scheduler import Attempt, Scheduler, SchedulerConfig, Ticket

MAKESPAN_RATIO = 1.05
MIN_RATE_FRACTION = 0.95
MAX_429_FRACTION = 0.01
MAX_LEARNED_429_FRACTION = 0.10
MIN_GOODPUT = 0.90
REAL_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    user: int
    submitted: float
    finished: float
    ok: bool


@dataclass(frozen=True, slots=True)
class Call:
    started: float
    status: int | None


async def _delivery(user: int, ticket: Ticket, submitted: float) -> Delivery:
    try:
        await ticket.result()
    except BotError:
        return Delivery(user, submitted, time.monotonic(), ok=False)
    return Delivery(user, submitted, time.monotonic(), ok=True)


async def _member(scheduler: Scheduler, user: int, count: int) -> list[Delivery]:
    """Ask for `count` clips as fast as the scheduler lets this member."""
    waiting: list[asyncio.Task[Delivery]] = []
    for index in range(count):
        request = SpeechRequest(text=f"m{user} s{index}")  # short: little audio to decode
        while True:
            try:
                ticket = scheduler.submit(request, Requester(user))
                break
            except CooldownError as exc:
                await asyncio.sleep(exc.retry_after)
            except QueueFullError:
                pending = [task for task in waiting if not task.done()]
                if pending:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(0.05)
        waiting.append(asyncio.create_task(_delivery(user, ticket, time.monotonic())))
    return list(await asyncio.gather(*waiting))


def steady_rate(starts: Sequence[float], rpm: int, window: float) -> float | None:
    """Calls per window over whole blocks of `rpm` consecutive calls.

    Under a saturated sliding-window limit call i+rpm starts one span after call i, so
    k*rpm calls over the time from call 1 to call 1+k*rpm is the rate the limiter sustains;
    it needs more than `rpm` calls to say anything.
    """
    ordered = sorted(starts)
    blocks = (len(ordered) - 1) // rpm
    if blocks < 1:
        return None
    elapsed = ordered[blocks * rpm] - ordered[0]
    return blocks * rpm / elapsed * window if elapsed > 0 else None


def config_for(args: argparse.Namespace) -> SchedulerConfig:
    scale = args.window / REAL_WINDOW
    return SchedulerConfig(
        rpm=args.rpm,
        window=args.window,
        safety_margin=args.margin,
        user_cooldown=args.cooldown,
        max_waiting_per_user=args.per_user,
        max_queue=max(200, args.users * args.per_user),
        initial_latency=args.latency,
        job_timeout=14 * 60 * scale,
        backoff_base=1.0 * scale,
        backoff_max=60.0 * scale,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run: what every member got and every call the key was asked."""

    deliveries: list[Delivery]
    first_waits: list[float]
    calls: list[Call]
    learned: list[int]  # what `on_limit_learned` was told
    began: float
    elapsed: float
    concurrency: int
    margin: float


@dataclass(frozen=True, slots=True)
class Learned:
    """The mistyped-limit figures: what happened after the first window."""

    after: int  # calls started after the first window
    refused: int  # of which answered 429
    served: int  # of which answered 200
    windows: int  # windows from the start to the last of those
    goodput: float  # served over what the key allows in those windows

    @property
    def fraction(self) -> float:
        return self.refused / self.after if self.after else 0.0

    @property
    def met(self) -> bool:
        return self.fraction < MAX_LEARNED_429_FRACTION and self.goodput >= MIN_GOODPUT


async def measure(args: argparse.Namespace) -> Outcome:
    """Run the members against a fake server of their own and record what happened."""
    config = config_for(args)
    key_rpm = args.key_rpm or args.rpm
    server = ["--rpm", str(key_rpm), "--window", str(args.window), "--latency", str(args.latency)]
    if args.no_reset:
        server.append("--no-reset")
    calls: list[Call] = []

    def on_attempt(attempt: Attempt) -> None:
        calls.append(Call(time.monotonic() - attempt.elapsed, attempt.status))
        if args.trace:
            print(
                f"  call {time.monotonic() - attempt.elapsed - began:7.3f} s "
                f"+{attempt.elapsed:.3f} s: {attempt.status}"
            )

    learned: list[int] = []
    began = time.monotonic()
    async with ServerProcess(*server) as fake, aiohttp.ClientSession() as session:
        client = SegmindClient(session, api_key=KEY, base_url=fake.base_url)
        scheduler = Scheduler(
            client.synthesize, config, on_attempt=on_attempt, on_limit_learned=learned.append
        )
        scheduler.start()
        began = time.monotonic()
        per_member = await asyncio.gather(
            *(_member(scheduler, user, args.requests) for user in range(1, args.users + 1))
        )
        elapsed = time.monotonic() - began
        concurrency = scheduler.concurrency
        await scheduler.close()
    return Outcome(
        deliveries=[d for member in per_member for d in member],
        first_waits=[min(d.finished for d in member) - began for member in per_member if member],
        calls=calls,
        learned=learned,
        began=began,
        elapsed=elapsed,
        concurrency=concurrency,
        margin=config.margin,
    )


async def run(args: argparse.Namespace) -> bool:
    outcome = await measure(args)
    key_rpm = args.key_rpm or args.rpm
    calls, deliveries, began = outcome.calls, outcome.deliveries, outcome.began
    total: int = args.users * args.requests
    served = sum(d.ok for d in deliveries)
    lost = total - served
    refused = sum(c.status == 429 for c in calls)
    to_result = [d.finished - d.submitted for d in deliveries if d.ok]
    makespan = max((d.finished for d in deliveries), default=began) - began
    bound = best_makespan(total, key_rpm, args.window, args.latency)

    print(
        f"members: {args.users}, requests per member: {args.requests} (all at once: "
        f"{'yes' if args.per_user >= args.requests and not args.cooldown else 'no'})"
    )
    print(
        f"scheduler told: {args.rpm} calls per {args.window:g} s; the key allows: {key_rpm}"
        f"{'' if not args.no_reset else ' (429s without reset headers)'}"
    )
    print(f"server latency: {args.latency:g} s (window/latency = {args.window / args.latency:.2f})")
    print(f"safety margin: {outcome.margin:.3f} s; concurrency at the end: {outcome.concurrency}")
    print(f"requests served: {served}")
    print(f"lost: {lost}")
    print(f"calls made: {len(calls)}")
    print(f"429s received: {refused}")
    print(f"longest wait for a first result: {max(outcome.first_waits, default=0.0):.2f} s")
    if to_result:
        print(f"p50 time to result: {percentile(to_result, 0.50):.2f} s")
        print(f"p95 time to result: {percentile(to_result, 0.95):.2f} s")
    print(f"elapsed: {outcome.elapsed:.2f} s")
    print(
        f"makespan: {makespan:.2f} s; best the limit allows: {bound:.2f} s "
        f"(ratio {makespan / bound:.3f})"
    )
    met: bool = lost == 0
    if args.key_rpm and args.key_rpm != args.rpm:
        figures = learned_figures(args.window, calls, began, key_rpm)
        print(
            f"calls after the first window: {figures.after}, answered 429: {figures.refused} "
            f"({figures.fraction:.1%})"
        )
        print(
            f"goodput after the first window: {figures.served} served in {figures.windows} "
            f"windows of {key_rpm} allowed = {figures.goodput:.1%}"
        )
        print(f"operator told (on_limit_learned): {outcome.learned}")
        met = figures.met and met
    else:
        ok_starts = [c.started for c in calls if c.status == 200]
        rate = steady_rate(ok_starts, args.rpm, args.window)
        if rate is None:
            print("achieved rate: n/a (needs more calls than the limit)")
        else:
            print(f"achieved rate: {rate:.2f} calls per window over the steady part")
            print(f"fraction of the limit: {rate / args.rpm:.1%}")
        met = bool(
            met
            and refused <= MAX_429_FRACTION * max(1, len(calls))
            and (rate is None or rate / args.rpm >= MIN_RATE_FRACTION)
            and makespan <= MAKESPAN_RATIO * bound
        )
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def learned_figures(window: float, calls: list[Call], began: float, key_rpm: int) -> Learned:
    """429s and goodput after the first window (goodput: served over what the key allows)."""
    after = [c for c in calls if c.started >= began + window]
    ok = sorted(c.started for c in after if c.status == 200)
    windows = math.floor((ok[-1] - began) / window) if ok else 0
    return Learned(
        after=len(after),
        refused=sum(c.status == 429 for c in after),
        served=len(ok),
        windows=windows,
        goodput=len(ok) / (key_rpm * windows) if windows else 0.0,
    )


#: How the mistyped-limit table's members ask: (label, waiting cap per member, cooldown at 60 s).
#: "all at once" is the `--key-rpm` figure's way (everything queued before the first call);
#: "over cooldowns" is the bot's own defaults (3 waiting each, 5 s apart), so the first burst
#: is one call per member and the rest queue up behind its 429s' pause.
ARRIVALS = (
    ("all at once", None, 0.0),
    (
        "over cooldowns",
        SchedulerConfig().max_waiting_per_user,
        SchedulerConfig().user_cooldown,
    ),
)


async def run_mistyped(args: argparse.Namespace) -> bool:
    """The mistyped-limit figures for each way of queueing, with and without reset headers."""
    key_rpm = args.key_rpm or 5
    scale = args.window / REAL_WINDOW
    logging.getLogger("bot").setLevel(logging.ERROR)  # a line per pause would hide the table
    print(
        f"SEGMIND_RPM={args.rpm} on a key that allows {key_rpm} per {args.window:g} s "
        f"(60 s scaled by {scale:g}; calls of {args.latency:g} s); "
        f"{args.users} members x {args.requests} requests"
    )
    print(
        f"{'members queue':<16}{'reset':>7}{'calls':>7}{'429s':>6}"
        f"{'after the 1st window: 429s':>30}{'goodput':>10}{'lost':>6}  operator told"
    )
    met = True
    for label, cap, cooldown in ARRIVALS:
        for no_reset in (False, True):
            one = argparse.Namespace(**vars(args))
            one.key_rpm = key_rpm
            one.no_reset = no_reset
            one.per_user = cap or args.requests
            one.cooldown = cooldown * scale
            outcome = await measure(one)
            figures = learned_figures(args.window, outcome.calls, outcome.began, key_rpm)
            lost = args.users * args.requests - sum(d.ok for d in outcome.deliveries)
            refused = sum(c.status == 429 for c in outcome.calls)
            after = f"{figures.refused} of {figures.after} ({figures.fraction:.1%})"
            print(
                f"{label:<16}{'no' if no_reset else 'yes':>7}{len(outcome.calls):>7}"
                f"{refused:>6}{after:>30}{figures.goodput:>10.1%}{lost:>6}  {outcome.learned}",
                flush=True,
            )
            met = met and figures.met and lost == 0 and len(outcome.learned) == 1
    print(
        f"targets: < {MAX_LEARNED_429_FRACTION:.0%} answered 429 after the first window, "
        f"goodput >= {MIN_GOODPUT:.0%}, nothing lost, the operator told once"
    )
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=10, help="simulated members")
    parser.add_argument(
        "--requests", type=int, default=None, help="clips each member wants (10; 3 mistyped)"
    )
    parser.add_argument("--rpm", type=int, default=50, help="SEGMIND_RPM: calls per window")
    parser.add_argument("--window", type=float, default=12.0, help="the limit's window (s)")
    parser.add_argument("--latency", type=float, default=3.6, help="server time per call (s)")
    parser.add_argument("--key-rpm", type=int, default=None, help="what the key really allows")
    parser.add_argument("--no-reset", action="store_true", help="429s without reset headers")
    parser.add_argument("--cooldown", type=float, default=0.0, help="per-member cooldown (s)")
    parser.add_argument("--per-user", type=int, default=10, help="queued+running per member")
    parser.add_argument("--margin", type=float, default=None, help="safety margin (s)")
    parser.add_argument("--trace", action="store_true", help="print every call")
    parser.add_argument(
        "--mistyped",
        action="store_true",
        help="the mistyped-limit table: each way of queueing, with and without reset headers",
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 3 if args.mistyped else 10
    if not asyncio.run(run_mistyped(args) if args.mistyped else run(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
