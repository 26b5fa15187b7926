"""How close the scheduler runs to the API key's limit without ever being told off.

N simulated members each want M clips. They go through the real `Scheduler` and the real
`SegmindClient` (one attempt per call) to the fake Segmind server, which enforces the same
requests-per-window limit with its own sliding window and answers 429 past it. Members behave
like people: refused for a cooldown they wait it out, refused for a full queue they wait for
one of their clips first. Nothing is ever dropped on purpose, so "lost" must be 0.

    python -m bench.scheduler_throughput [--users N] [--requests M] [--rpm R] [--window S]
                                         [--latency L] [--concurrency C] [--cooldown S]

Targets: at least 95 % of the limit over the steady part, under 1 % of calls answered 429.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bot.errors import BotError, CooldownError, QueueFullError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.client import SegmindClient
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from tests.fake_segmind import FakeSegmind

MIN_RATE_FRACTION = 0.95
MAX_429_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class Delivery:
    user: int
    submitted: float
    finished: float
    ok: bool


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
        request = SpeechRequest(text=f"Member {user} reads sentence number {index}.")
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


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


async def run(args: argparse.Namespace) -> bool:
    config = SchedulerConfig(
        rpm=args.rpm,
        window=args.window,
        safety_margin=args.margin,
        max_concurrency=args.concurrency,
        user_cooldown=args.cooldown,
        max_waiting_per_user=args.per_user,
        max_queue=max(200, args.users * args.per_user),
        initial_latency=args.latency,
    )
    async with (
        FakeSegmind(rpm_limit=args.rpm, rpm_window=args.window, latency=args.latency) as fake,
        aiohttp.ClientSession() as session,
    ):
        client = SegmindClient(session, api_key=fake.api_key, base_url=fake.base_url)
        scheduler = Scheduler(client.synthesize, config)
        scheduler.start()
        began = time.monotonic()
        per_member = await asyncio.gather(
            *(_member(scheduler, user, args.requests) for user in range(1, args.users + 1))
        )
        elapsed = time.monotonic() - began
        await scheduler.close()

    deliveries = [d for member in per_member for d in member]
    served = sum(d.ok for d in deliveries)
    lost = args.users * args.requests - served
    calls = fake.tts_calls
    refused = fake.rate_limited_count
    first_waits = [min(d.finished for d in member) - began for member in per_member if member]
    to_result = [d.finished - d.submitted for d in deliveries if d.ok]
    rate = steady_rate([r.received for r in fake.requests], args.rpm, args.window)

    print(f"members: {args.users}")
    print(f"requests per member: {args.requests}")
    print(f"limit: {args.rpm} calls per {args.window:g} s")
    print(f"safety margin: {config.margin:.3f} s")
    print(f"max concurrency: {config.max_concurrency}")
    print(f"server latency: {args.latency:g} s")
    print(f"requests served: {served}")
    print(f"lost: {lost}")
    print(f"calls made: {calls}")
    print(f"429s received: {refused}")
    print(f"longest wait for a first result: {max(first_waits, default=0.0):.2f} s")
    if to_result:
        print(f"p50 time to result: {percentile(to_result, 0.50):.2f} s")
        print(f"p95 time to result: {percentile(to_result, 0.95):.2f} s")
    print(f"elapsed: {elapsed:.2f} s")
    if rate is None:
        print("achieved rate: n/a (needs more calls than the limit)")
    else:
        print(f"achieved rate: {rate:.2f} calls per window over the steady part")
        print(f"fraction of the limit: {rate / args.rpm:.1%}")
    met = (
        lost == 0
        and refused <= MAX_429_FRACTION * max(1, calls)
        and (rate is None or rate / args.rpm >= MIN_RATE_FRACTION)
    )
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=10, help="simulated members")
    parser.add_argument("--requests", type=int, default=10, help="clips each member wants")
    parser.add_argument("--rpm", type=int, default=50, help="calls allowed per window")
    parser.add_argument("--window", type=float, default=6.0, help="the limit's window (s)")
    parser.add_argument("--latency", type=float, default=0.2, help="server time per call (s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=SchedulerConfig().max_concurrency,
        help="calls in flight at once",
    )
    parser.add_argument("--cooldown", type=float, default=0.0, help="per-member cooldown (s)")
    parser.add_argument("--per-user", type=int, default=3, help="queued+running per member")
    parser.add_argument("--margin", type=float, default=None, help="safety margin (s)")
    args = parser.parse_args(argv)
    if not asyncio.run(run(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
