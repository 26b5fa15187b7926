"""Four bot processes on one API key share its limit through Redis (issue 14, "done when").

A real Redis (`tests.redis_server`) and the fake Segmind server enforcing the key's limit
(`bench.scheduler_server`, a process of its own) are started; then 4 bot cores, each in a
process of its own, built as the bot builds them (`open_services` with REDIS_URL, no
Discord): 25 members × 4 requests each per process, all submitted at one agreed moment. It
prints goodput (the least makespan the key's limit allows for the calls served, over the
actual one), the server's 429s, requests lost, calls made and texts paid twice; then the same
with one process SIGKILLed mid-run (its requests are gone with it; the survivors' must not be,
and the dead process's slots must not stall them); then every process asking the same
`--distinct` texts at the same moment, which must make one call per text (identical calls in
flight are coalesced across processes, `bot.synthesis.cluster.flights`); then two processes
through a Redis outage (`bench.cluster_outage`). Each of the first three runs also
prints the bytes Redis received per second of audio made: a clip goes up once (as the shared
clip, which is also the answer for processes waiting for it), so this stays near the clips'
own size (about 6 KB per second of Ogg Opus) plus the window's and the claims' round trips.

Requests go in as members' do, through `SpeechSource.begin` (cache, coalescing, queue).

The real 60 s window and ~18 s calls are scaled down together (by 30 by default: 2 s, 0.6 s)
so both runs take well under a minute.

    python -m bench.cluster [--processes 4] [--members 25] [--requests 4] [--rpm 50]
        [--scale 30] [--margin S] [--distinct 75] [--no-outage]

Targets: goodput ≥ 95 %, no 429s, 0 lost, nothing paid twice; identical requests: calls ==
distinct texts, no 429s, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from bench.cluster_outage import read_result, report_outage, run_outage, spawn_worker
from bench.scheduler_server import KEY, ServerProcess, best_makespan
from bot.config import load_settings
from bot.errors import BotError
from bot.services import open_services
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import SchedulerConfig
from bot.synthesis.stream import Pending
from tests.redis_server import RedisServer, find_redis_server

MIN_GOODPUT = 0.95
REAL_WINDOW = 60.0
REAL_LATENCY = 18.0
KILL_AT = 0.4  # of the best makespan


# -- one bot process ---------------------------------------------------------------------------


async def _outcome(pending: Pending) -> float | None:
    """Seconds of audio the request got, None if it failed."""
    try:
        return (await pending.result()).duration
    except BotError:
        return None


def _text(args: argparse.Namespace, member: int, k: int) -> str:
    """Each process's own texts, or (`--same`) one set every process asks for."""
    if args.same:
        return f"shared {(member * args.requests + k) % args.distinct}"
    return f"p{args.index} m{member} r{k}"


async def _worker(args: argparse.Namespace) -> None:
    window, latency = REAL_WINDOW / args.scale, REAL_LATENCY / args.scale
    with tempfile.TemporaryDirectory(prefix="tts-cluster-") as data:
        settings = load_settings(
            env_file=None,
            segmind_api_key=KEY,
            segmind_base_url=args.base_url,
            segmind_rpm=args.rpm,
            redis_url=args.redis_url,
            data_dir=Path(data),
            cache_disk_mb=0,  # the memory cache, and the shared tier in Redis, as members have
            user_cooldown=0,
        )
        config = SchedulerConfig(
            rpm=args.rpm,
            window=window,
            safety_margin=args.margin,
            user_cooldown=0,
            max_waiting_per_user=args.requests,
            max_queue=10_000,
            job_timeout=14 * 60 / args.scale,
            backoff_base=1 / args.scale,
            backoff_max=60 / args.scale,
            initial_latency=latency,
        )
        services = await open_services(settings, scheduler_config=config)
        try:
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
            source = services.speech.source
            texts = [
                _text(args, member, k)
                for member in range(args.members)
                for k in range(args.requests)
            ]
            pending = [
                await source.begin(
                    SpeechRequest(text=text),
                    Requester(args.index * 1000 + n // args.requests),
                    follow_up=n % args.requests > 0,
                )
                for n, text in enumerate(texts)
            ]
            print("SUBMITTED", flush=True)
            outcomes = await asyncio.gather(*(_outcome(p) for p in pending))
            finished = time.time()
            stats = services.scheduler.stats
            shared = source.shared_flights
        finally:
            await services.close()
    served = [seconds for seconds in outcomes if seconds is not None]
    result = {
        "served": len(served),
        "lost": len(outcomes) - len(served),
        "audio": {text: seconds for text, seconds in zip(texts, outcomes, strict=True) if seconds},
        "finished": finished,
        "rate_limited": stats.rate_limited,
        "shared_flights": shared,
    }
    print("RESULT " + json.dumps(result), flush=True)


# -- the bench ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    goodput: float
    rate_limited: int
    lost: int
    calls: int
    paid_twice: int
    makespan: float
    best: float
    shared_flights: int
    #: Bytes Redis received during the run, and seconds of distinct audio made.
    redis_in: int
    audio_made: float


async def _run(
    args: argparse.Namespace, redis: RedisServer, db: int, *, kill: bool, same: bool = False
) -> Run:
    window, latency = REAL_WINDOW / args.scale, REAL_LATENCY / args.scale
    # Answered in Ogg Opus, the form the bot keeps: the per-clip transcode of other shapes is
    # `bench.overhead`'s subject, and on a small machine it would blur this one's timing.
    server_args = ["--rpm", str(args.rpm), "--window", str(window), "--latency", str(latency)]
    server_args += ["--shape", "ogg"]
    received = await _redis_received(redis)
    async with ServerProcess(*server_args) as server:
        start_at = time.time() + 3.0  # every process up and connected before then
        workers = [
            await spawn_worker(
                args,
                index,
                server.base_url,
                redis.url(db),
                start_at,
                f"--distinct={args.distinct}",
                *(["--same"] if same else []),
            )
            for index in range(args.processes)
        ]
        readers = [asyncio.create_task(read_result(worker)) for worker in workers]
        per_process = args.members * args.requests
        if kill:
            total = per_process * args.processes
            await asyncio.sleep(
                start_at - time.time() + KILL_AT * best_makespan(total, args.rpm, window, latency)
            )
            workers[-1].send_signal(signal.SIGKILL)
        results = await asyncio.gather(*readers)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.base_url}/bench-stats") as response,
        ):
            stats = await response.json()
    redis_in = await _redis_received(redis) - received
    survivors = [r for r in results if r is not None]
    audio = {text: seconds for r in survivors for text, seconds in r["audio"].items()}
    if kill and len(survivors) != args.processes - 1:
        raise RuntimeError("the killed process finished before it was killed: raise KILL_AT")
    makespan = max(r["finished"] for r in survivors) - start_at
    best = best_makespan(stats["successes"], args.rpm, window, latency)
    return Run(
        goodput=best / makespan,
        rate_limited=stats["rate_limited"],
        lost=sum(r["lost"] for r in survivors) + per_process * (args.processes - len(results)),
        calls=stats["calls"],
        paid_twice=stats["paid_twice"],
        makespan=makespan,
        best=best,
        shared_flights=sum(r["shared_flights"] for r in survivors),
        redis_in=redis_in,
        audio_made=sum(audio.values()),
    )


async def _redis_received(redis: RedisServer) -> int:
    async with Redis.from_url(redis.url()) as client:
        return int((await client.info("stats"))["total_net_input_bytes"])


def _traffic(run: Run) -> str:
    per_second = run.redis_in / run.audio_made if run.audio_made else 0.0
    return (
        f"; Redis received {run.redis_in / 1024:,.0f} KiB, {per_second:,.0f} bytes per second "
        f"of audio made ({run.audio_made:,.0f} s)"
    )


def _report(name: str, run: Run) -> bool:
    ok = run.goodput >= MIN_GOODPUT and run.rate_limited == 0 and run.lost == 0
    ok = ok and run.paid_twice == 0
    print(
        f"{name}: goodput {run.goodput:.1%} of the limit (makespan {run.makespan:.2f} s, "
        f"best {run.best:.2f} s), 429s {run.rate_limited}, lost {run.lost}, "
        f"calls {run.calls}, paid twice {run.paid_twice}{_traffic(run)} "
        f"-> {'PASS' if ok else 'FAIL'}"
    )
    return ok


def _report_same(args: argparse.Namespace, run: Run) -> bool:
    distinct = min(args.distinct, args.members * args.requests)
    asked = args.processes * args.members * args.requests
    ok = run.calls == distinct and run.rate_limited == 0 and run.lost == 0
    print(
        f"identical requests: {asked} asked for {distinct} distinct texts in every process, "
        f"calls {run.calls}, answered by another process's call {run.shared_flights}, "
        f"429s {run.rate_limited}, lost {run.lost}, paid twice {run.paid_twice}, "
        f"makespan {run.makespan:.2f} s (best {run.best:.2f} s){_traffic(run)} "
        f"-> {'PASS' if ok else 'FAIL'}"
    )
    return ok


async def _bench(args: argparse.Namespace) -> bool:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    redis = RedisServer(binary)
    redis.start()
    try:
        print(
            f"{args.processes} processes × {args.members} members × {args.requests} requests on "
            f"one key at {args.rpm} per {REAL_WINDOW / args.scale:g} s, calls of "
            f"{REAL_LATENCY / args.scale:g} s"
        )
        full = _report("all alive", await _run(args, redis, 1, kill=False))
        killed = _report("one killed", await _run(args, redis, 2, kill=True))
        same = _report_same(args, await _run(args, redis, 3, kill=False, same=True))
        outage = report_outage(await run_outage(args, redis, 4)) if args.outage else True
    finally:
        redis.stop()
    return full and killed and same and outage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=50)
    parser.add_argument("--scale", type=float, default=30.0)
    # The auto margin (1 % of the window: 20 ms here) scales down with the window, but a Redis
    # round trip and six processes on a small machine do not: 40 ms keeps arrivals inside it.
    parser.add_argument("--margin", type=float, default=0.04, help="safety margin (s)")
    parser.add_argument(
        "--distinct", type=int, default=75, help="texts every process asks in the third run"
    )
    parser.add_argument(
        "--no-outage", dest="outage", action="store_false", help="skip the Redis outage run"
    )
    parser.add_argument("--same", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_worker(args))
        return
    sys.exit(0 if asyncio.run(_bench(args)) else 1)


if __name__ == "__main__":
    main()
