"""Dispatcher cost at scale: 10,000 queued tickets drained, each dispatcher step timed.

The scheduler's own work per event must not grow with the queue (issue 11, point 12: it used
to rebuild the whole plan on every submit, step and cancel, 6-16 ms per event at 10,000). This
measures the dispatcher alone: an instant fake `synthesize` in-process (no HTTP), a rate far
above the queue, and every `_step` timed with `perf_counter`. It also times the submits, a
few hundred withdrawals, and, with `--listeners`, the batched place/ETA refreshes that keep
members' messages current (those run at most once a second, outside the step).

    python -m bench.scheduler_drain [--tickets 10000] [--members 1000] [--listeners]
                                    [--concurrency 1]

With one call in flight at a time every ticket is its own dispatcher step (launch, outcome,
next launch), so a step's time is the work per event; with more, one step launches a batch.

Target: dispatcher step p99 < 1 ms. Exits 1 if missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.scheduler_server import percentile
from bot.audio import Audio, AudioFormat, encode_wav, probe
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from tests.signals import tone

TARGET_P99 = 0.001
AUDIO = probe(encode_wav(tone(0.05)), AudioFormat.WAV)


async def instant(request: SpeechRequest) -> Audio:
    return AUDIO


def timed(samples: list[float], method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            samples.append(time.perf_counter() - started)

    return wrapper


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


async def run(args: argparse.Namespace) -> bool:
    config = SchedulerConfig(
        rpm=1_000_000,
        user_cooldown=0,
        max_queue=args.tickets,
        max_waiting_per_user=args.tickets,
        initial_latency=0.0,
        max_concurrency=args.concurrency,
    )
    scheduler = Scheduler(instant, config)
    steps: list[float] = []
    refreshes: list[float] = []
    # Benches may look inside: time the dispatcher's step and the batched refresh as they run.
    setattr(scheduler, "_step", timed(steps, scheduler._step))  # noqa: B010
    planner = scheduler._planner
    setattr(planner, "refresh", timed(refreshes, planner.refresh))  # noqa: B010
    submits: list[float] = []
    tickets: list[Ticket] = []
    for n in range(args.tickets):
        started = time.perf_counter()
        ticket = scheduler.submit(SpeechRequest(text=f"t{n}"), Requester(n % args.members))
        submits.append(time.perf_counter() - started)
        tickets.append(ticket)
        if args.listeners:
            ticket.add_listener(lambda t: None)
    withdrawals: list[float] = []
    for ticket in tickets[1::37]:
        started = time.perf_counter()
        ticket.cancel()
        withdrawals.append(time.perf_counter() - started)
    began = time.perf_counter()
    scheduler.start()
    await asyncio.gather(*(t.result() for t in tickets if not t.cancelled))
    drained = time.perf_counter() - began
    await scheduler.close()

    print(f"tickets: {args.tickets} from {args.members} members, listeners: {args.listeners}")
    print(f"served: {scheduler.stats.served}, withdrawn: {scheduler.stats.cancelled}")
    print(
        f"submit: p50 {ms(percentile(submits, 0.5))}, p99 {ms(percentile(submits, 0.99))}, "
        f"max {ms(max(submits))}"
    )
    print(
        f"withdraw: p50 {ms(percentile(withdrawals, 0.5))}, "
        f"p99 {ms(percentile(withdrawals, 0.99))}, max {ms(max(withdrawals))}"
    )
    print(
        f"dispatcher steps: {len(steps)}; p50 {ms(percentile(steps, 0.5))}, "
        f"p99 {ms(percentile(steps, 0.99))}, max {ms(max(steps))}"
    )
    if refreshes:
        print(
            f"place/ETA refreshes: {len(refreshes)}; p50 {ms(percentile(refreshes, 0.5))}, "
            f"max {ms(max(refreshes))}"
        )
    else:
        print("place/ETA refreshes: 0 (nobody listening, nobody asked)")
    print(f"drained in {drained:.2f} s")
    met = percentile(steps, 0.99) < TARGET_P99
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler_drain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1_000)
    parser.add_argument("--listeners", action="store_true", help="a listener on every ticket")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="calls in flight: 1 makes one step per ticket"
    )
    args = parser.parse_args(argv)
    if not asyncio.run(run(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
