"""Segmind's v2 protocol: submit once, then poll the job until its audio is ready.

Segmind recommends v2 for calls over about 10 s (ours take about 18 s), and it fixes a money
problem of v1: a v1 call whose connection drops after Segmind accepted it is paid, and so is
its retry. A v2 job has an id, so a dropped poll is simply polled again; an accepted job is
never submitted twice. Polls are free and not paced; only the submit counts against the
key's rate, and it is what the scheduler paces (one `synthesize` is one submit).

Statuses are read without regard to case ("COMPLETED", "completed", "Completed"), in the
status answer and in the result document alike: a spelling must never make a finished, paid
job look unfinished until the deadline.

What a 404 on a poll means. Segmind keeps a result one hour after its submit, and
`SEGMIND_JOB_TIMEOUT` is at most an hour, so for a job this client submitted a 404 is never
"expired as documented": it is either a job not yet visible on the poll side (just after the
submit) or a gateway that lost track of it for a while. Either may clear, and giving up on
the first one could throw away a result that is already paid. So 404s are polled through,
at the usual growing waits, up to `MAX_MISSING_POLLS` in a row from the status or the result
URL (another answer from the same URL resets its count; a status saying COMPLETED does not
reset the result's), and within the job's deadline; past that, `JobLostError` says whether
the job was never seen or was seen and then went missing. Nothing is ever re-submitted.

Once the job is done, fetching its audio (a link, usually) and checking it take at most
REQUEST_TIMEOUT, as one v1 call does, and fail with the same typed errors as v1's.
"""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.audio import Audio
from bot.errors import (
    BadAudioError,
    JobFailedError,
    JobLostError,
    JobTimeoutError,
    ModelNotFoundError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
)
from bot.speech.request import SpeechRequest
from bot.synthesis.client import CallRecord, SegmindClient, _read_capped

__all__ = ["MAX_MISSING_POLLS", "SegmindV2Client"]

#: Each wait between polls is this much longer than the last, up to `Timeouts.last_poll`.
_GROWTH = 1.5
#: 404s in a row a job may answer before it is given up as lost (about 13 s at the usual
#: waits): enough for a job to become visible, or a gateway to find it again.
MAX_MISSING_POLLS = 5


class _Poll(enum.Enum):
    """A poll that gave no document: a blip worth polling through, or a 404."""

    BLIP = "blip"
    MISSING = "missing"


class SegmindV2Client(SegmindClient):
    """The same client face as v1 (`synthesize`, `get_credits`), over submit and poll."""

    @property
    def root(self) -> str:
        """The base URL without its version: `https://api.segmind.com`."""
        base = self._base_url
        return base[: -len("/v1")] if base.endswith("/v1") else base

    @property
    def endpoint(self) -> str:
        return f"{self.root}/v2/{self._model}"

    async def synthesize(self, request: SpeechRequest) -> Audio:
        """Submit exactly once, then poll within the job deadline.

        A submit refused before a job id came back follows the usual rules (the scheduler may
        retry it: nothing was accepted). Once a job exists, drops, timeouts and 5xx answers
        while polling are polled through; the job is never submitted again.
        """
        started = self._clock()
        deadline = asyncio.get_running_loop().time() + self.timeouts.job_timeout
        record: dict[str, Any] = {"status": None, "request_id": None, "cost": None}
        result: Audio | None = None
        error: SegmindError | None = None
        try:
            job = await self._submit(request, record)
            document = await self._await_result(job, deadline)
            record["cost"] = _number(document.get("metrics"), "cost")
            credits = _number(document.get("metrics"), "remaining_credits")
            if credits is not None:
                self.remaining_credits = credits
            result = await self._deliver(document, deadline)
            return result
        except SegmindError as exc:
            exc.request_id = exc.request_id or record["request_id"]
            error = exc
            raise
        # Safety nets, as in v1: whatever escapes the steps above is still a typed error.
        except TimeoutError:
            error = SegmindTimeoutError("timed out", request_id=record["request_id"])
            raise error from None
        except aiohttp.ClientError as exc:
            error = self._client_error(exc, record["request_id"])
            raise error from None
        finally:
            self._emit(
                CallRecord(
                    status=record["status"],
                    elapsed=self._clock() - started,
                    error=type(error).__name__ if error else None,
                    request_id=record["request_id"],
                    cost=record["cost"],
                    audio_seconds=result.duration if result else None,
                )
            )

    async def _submit(self, request: SpeechRequest, record: dict[str, Any]) -> dict[str, str]:
        """The one billable request. A submit that fails before a job id came back follows the
        usual rules (a drop or a 5xx may be retried by the scheduler, as in v1)."""
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.request_timeout, sock_connect=self.timeouts.connect_timeout
        )
        try:
            async with self._session.post(
                self.endpoint,
                json=request.payload(),
                headers=self._headers(self.endpoint),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                record["status"] = response.status
                if not 200 <= response.status < 300:
                    raise await self._status_error(response)
                raw = await _read_capped(response)
        except TimeoutError:
            raise SegmindTimeoutError("no answer to the submit in time") from None
        except aiohttp.ClientError as exc:
            raise self._client_error(exc, None) from None
        job = _job(raw)
        record["request_id"] = job["id"]
        return job

    async def _deliver(self, document: dict[str, Any], deadline: float) -> Audio:
        """The finished job's audio, fetched and checked within REQUEST_TIMEOUT (and the
        job's deadline): a slow link or a decoder reaching the deadline is a
        `SegmindTimeoutError`, as in v1, never a bare TimeoutError."""
        limit = self.timeouts.request_timeout
        until = min(deadline, asyncio.get_running_loop().time() + limit)
        body = json.dumps({"output": document.get("output")}).encode()
        try:
            async with asyncio.timeout_at(until):
                return await self._audio_from_body(body, "application/json", until)
        except TimeoutError:
            raise SegmindTimeoutError(
                f"the finished job's audio was not fetched and checked within {limit:.0f} s"
            ) from None

    async def _await_result(self, job: dict[str, str], deadline: float) -> dict[str, Any]:
        """Poll the job's status with growing waits, then fetch its result."""
        status_url = self._same_origin(job.get("status_url"), f"/v2/requests/{job['id']}/status")
        result_url = self._same_origin(job.get("response_url"), f"/v2/requests/{job['id']}")
        wait = self.timeouts.first_poll
        loop = asyncio.get_running_loop()
        missing = _Missing(job["id"])
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise JobTimeoutError(f"job {job['id']} still unfinished at the deadline")
            await asyncio.sleep(min(wait, left))
            wait = min(self.timeouts.last_poll, wait * _GROWTH)
            answer = missing.note(status_url, await self._poll_json(status_url, deadline))
            if _state(answer) not in {"COMPLETED", "FAILED"}:
                continue  # A failed job's result carries its reason: fetch it either way.
            document = missing.note(result_url, await self._poll_json(result_url, deadline))
            if not isinstance(document, dict):
                continue
            if _state(document) == "FAILED":
                raise JobFailedError("the job FAILED", upstream_message=self._job_message(document))
            if _state(document) == "COMPLETED":
                return document

    async def _poll_json(self, url: str, deadline: float) -> dict[str, Any] | _Poll:
        """One poll: the answer; BLIP for one worth polling through (drop, timeout, 5xx, 202,
        a body that does not parse); MISSING for a 404. Errors polling cannot fix (the key,
        a failed job) raise."""
        try:
            async with self._session.get(
                url,
                headers=self._headers(url),
                timeout=self._poll_timeout(deadline),
                allow_redirects=False,
            ) as response:
                if response.status == 202:
                    return _Poll.BLIP
                if response.status != 200:
                    error = await self._status_error(response)
                    if isinstance(error, ModelNotFoundError):
                        return _Poll.MISSING
                    if isinstance(error, RateLimitedError):
                        last = self.timeouts.last_poll
                        await asyncio.sleep(min(error.retry_after or last, last))
                        return _Poll.BLIP
                    if error.retryable:
                        return _Poll.BLIP
                    raise error
                raw = await _read_capped(response)
        except (TimeoutError, aiohttp.ClientError, SegmindTimeoutError, SegmindConnectionError):
            return _Poll.BLIP
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _Poll.BLIP
        return document if isinstance(document, dict) else _Poll.BLIP

    def _same_origin(self, url: str | None, path: str) -> str:
        """Follow a URL Segmind gave only if it is on the configured origin: the key goes with
        every poll, and it must never leave that origin."""
        if url and _origin(url) == _origin(self.root):
            return url
        return f"{self.root}{path}"

    def _poll_timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        """One poll may take REQUEST_TIMEOUT at most, and never past the job's deadline."""
        left = max(0.001, deadline - asyncio.get_running_loop().time())
        return aiohttp.ClientTimeout(
            total=min(self.timeouts.request_timeout, left),
            sock_connect=self.timeouts.connect_timeout,
        )

    def _job_message(self, document: dict[str, Any]) -> str | None:
        for key in ("error", "message", "detail"):
            value = document.get(key)
            if isinstance(value, str) and value.strip():
                return self._redact(value.strip())[:300]
        return None


class _Missing:
    """Counts a job's 404s in a row, per URL (the status and the result are answered
    apart: a status saying COMPLETED must not hide a result that keeps answering 404), and
    gives up on the job past `MAX_MISSING_POLLS`."""

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._seen = False  # some poll answered for it: the job exists upstream
        self._counts: dict[str, int] = {}

    def note(self, url: str, answer: dict[str, Any] | _Poll) -> dict[str, Any] | _Poll:
        """Pass `answer` on, after counting it; raise `JobLostError` once `url` answered 404
        too many times in a row."""
        if answer is _Poll.BLIP:
            return answer  # Says nothing about the job: neither a 404 nor a sign of life.
        if answer is not _Poll.MISSING:
            self._seen = True
            self._counts[url] = 0
            return answer
        count = self._counts[url] = self._counts.get(url, 0) + 1
        if count < MAX_MISSING_POLLS:
            return answer
        if self._seen:
            raise JobLostError(
                f"job {self._job_id} answered earlier polls, then Segmind answered 404 (not "
                f"found) {count} times in a row: its result is lost"
            )
        raise JobLostError(
            f"job {self._job_id} was accepted, but Segmind answered 404 (not found) to its "
            f"first {count} polls"
        )


def _state(answer: dict[str, Any] | _Poll) -> str | None:
    """A document's status, upper-cased: gateways differ in how they spell it."""
    state = answer.get("status") if isinstance(answer, dict) else None
    return state.strip().upper() if isinstance(state, str) else None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _job(raw: bytes) -> dict[str, str]:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadAudioError("a submit answer that does not parse") from None
    if not isinstance(document, dict) or not isinstance(document.get("request_id"), str):
        raise BadAudioError("a submit answer without a request_id")
    job = {"id": document["request_id"]}
    for key in ("status_url", "poll_url", "response_url"):
        value = document.get(key)
        if isinstance(value, str):
            job[key] = value
    job.setdefault("status_url", job.get("poll_url", ""))
    return job


def _number(metrics: Any, key: str) -> float | None:
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
