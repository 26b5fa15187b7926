"""`bench.cluster`'s outage run: Redis hung, then killed, then back, while two processes share
one key at its limit.

What a server owner feels after an outage is the windows that follow it: does the cluster get
back to the key's whole limit, do the processes share it evenly again, and does anyone keep
being refused (429) for a limit learned while each process paced alone. So this run keeps both
processes busier than the key allows from start to end, and judges only the windows after
Redis returns, from the fake server's own record of each call (who asked, when, what it got):

- goodput of the first two windows after the return, and of the windows after those;
- each process's share of the calls served after the return (even demand: even shares);
- 429s while Redis was away, of the calls made then (each process alone, the key shared
  without a referee: under 10 %), and after the return (the key still counts the calls made
  alone, which the restarted Redis never saw: a few are expected in the first window).

The timeline is in windows of the key's limit (scaled like `bench.cluster`): Redis hangs
(SIGSTOP) one window in, is killed a window later, and comes back empty on the same port at
window four.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.scheduler_server import ServerProcess
from tests.redis_server import RedisServer

HANG_AT, KILL_AT, BACK_AT = 1.0, 2.0, 4.0  # in windows from the start
MIN_GOODPUT = 0.95
MAX_SPLIT = 0.20
MAX_LIMITED = 0.10  # of the calls made while Redis was away


async def read_result(process: asyncio.subprocess.Process) -> dict[str, Any] | None:
    """A bench worker's `RESULT` line, None if it died before printing one."""
    assert process.stdout is not None
    result = None
    async for raw in process.stdout:
        line = raw.decode()
        if line.startswith("RESULT "):
            result = json.loads(line.split(" ", 1)[1])
    await process.wait()
    return result


async def spawn_worker(
    args: argparse.Namespace,
    index: int,
    base_url: str,
    redis_url: str,
    start_at: float,
    *extra: str,
) -> asyncio.subprocess.Process:
    """One bench worker, a bot core in a process of its own (`bench.cluster --worker`);
    `extra` are its own arguments, after the shared ones."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.cluster",
        "--worker",
        f"--index={index}",
        f"--base-url={base_url}",
        f"--redis-url={redis_url}",
        f"--start-at={start_at}",
        f"--rpm={args.rpm}",
        f"--scale={args.scale}",
        f"--members={args.members}",
        f"--requests={args.requests}",
        *([f"--margin={args.margin}"] if args.margin is not None else []),
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )


@dataclass(frozen=True, slots=True)
class Outage:
    windows: int  # judged after the return
    early: float  # goodput of the first two windows after the return
    later: float  # goodput of the windows after those
    shares: tuple[int, ...]  # calls served per process after the return
    limited_after: int
    limited_during: int
    calls_during: int
    lost: int
    paid_twice: int

    @property
    def split(self) -> float:
        """How far the busiest and the least busy process are apart, relative to the first."""
        return (max(self.shares) - min(self.shares)) / max(1, max(self.shares))


def judge(
    records: list[dict[str, Any]], *, processes: int, start: float, window: float, rpm: int
) -> tuple[float, float, tuple[int, ...], int, int, int, int]:
    """Goodput early and later, shares, 429s after and during, calls during, windows judged:
    from the
    server's records (`received` on the machine's monotonic clock, `status`, `text`)."""
    back = start + BACK_AT * window
    served_after = [r for r in records if r["status"] == 200 and r["received"] >= back]
    last = max((r["received"] for r in served_after), default=back)
    # Whole windows only: the last, partly empty one would count the demand running out.
    windows = max(1, int((last - back) // window))
    end = back + windows * window

    def goodput(first: int, count: int) -> float:
        lo, hi = back + first * window, back + (first + count) * window
        made = sum(1 for r in served_after if lo <= r["received"] < hi)
        return made / (rpm * count) if count > 0 else 0.0

    shares = [0] * processes
    for record in served_after:
        if record["received"] < end:
            shares[int(record["text"].split()[0][1:])] += 1
    limited_after = sum(1 for r in records if r["status"] == 429 and r["received"] >= back)
    during = (start + HANG_AT * window, back)
    away = [r for r in records if during[0] <= r["received"] < during[1]]
    limited_during = sum(1 for r in away if r["status"] == 429)
    later = goodput(2, windows - 2) if windows > 2 else 0.0
    early = goodput(0, min(2, windows))
    return early, later, tuple(shares), limited_after, limited_during, len(away), windows


async def run_outage(args: argparse.Namespace, redis: RedisServer, db: int) -> Outage:
    window, latency = 60.0 / args.scale, 18.0 / args.scale
    processes = 2
    # Enough for both processes to stay past their shares of the key four windows after Redis
    # is back, and few enough that none waits past its deadline (14 windows) in the outage.
    members = int(args.rpm * 8 / (processes * args.requests)) + 1
    server_args = ["--rpm", str(args.rpm), "--window", str(window), "--latency", str(latency)]
    server_args += ["--shape", "ogg"]
    async with ServerProcess(*server_args) as server:
        start_at = time.time() + 3.0
        start = time.monotonic() + 3.0
        workers = [
            await spawn_worker(
                args, index, server.base_url, redis.url(db), start_at, f"--members={members}"
            )
            for index in range(processes)
        ]
        readers = [asyncio.create_task(read_result(worker)) for worker in workers]
        await asyncio.sleep(max(0.0, start + HANG_AT * window - time.monotonic()))
        redis.hang()
        await asyncio.sleep(max(0.0, start + KILL_AT * window - time.monotonic()))
        port = redis.port
        redis.stop()
        await asyncio.sleep(max(0.0, start + BACK_AT * window - time.monotonic()))
        redis.start(port=port)
        results = await asyncio.gather(*readers)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.base_url}/bench-stats?records=1") as response,
        ):
            stats = await response.json()
    early, later, shares, after, during, away, windows = judge(
        stats["records"], processes=processes, start=start, window=window, rpm=args.rpm
    )
    per_process = members * args.requests
    lost = sum(r["lost"] for r in results if r is not None)
    lost += per_process * sum(1 for r in results if r is None)
    return Outage(windows, early, later, shares, after, during, away, lost, stats["paid_twice"])


def report_outage(run: Outage) -> bool:
    ok = run.later >= MIN_GOODPUT and run.split <= MAX_SPLIT and run.lost == 0
    ok = ok and run.limited_during <= MAX_LIMITED * run.calls_during and run.paid_twice == 0
    print(
        f"Redis hung, killed and back: over the {run.windows} windows after it returned, "
        f"goodput {run.early:.1%} in the first two, {run.later:.1%} after them (best 100%); "
        f"calls per process {'/'.join(map(str, run.shares))} (apart {run.split:.0%}); "
        f"429s after the return {run.limited_after}, while it was away {run.limited_during} "
        f"of {run.calls_during} calls; "
        f"lost {run.lost}, paid twice {run.paid_twice} -> {'PASS' if ok else 'FAIL'}"
    )
    return ok
