"""Segmind's v2 protocol: submit once, then poll the job until its audio is ready.

Segmind recommends v2 for calls over about 10 s (ours take about 18 s), and it fixes a money
problem of v1: a v1 call whose connection drops after Segmind accepted it is paid, and so is
its retry. A v2 job has an id, so a dropped poll is simply polled again; an accepted job is
never submitted twice. Polls are free and not paced; only the submit counts against the
key's rate, and it is what the scheduler paces (one `synthesize` is one submit).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.audio import Audio
from bot.errors import (
    BadAudioError,
    JobFailedError,
    JobTimeoutError,
    ModelNotFoundError,
    RateLimitedError,
    SegmindConnectionError,
    SegmindError,
    SegmindTimeoutError,
)
from bot.speech.request import SpeechRequest
from bot.synthesis.client import CallRecord, SegmindClient, _read_capped

__all__ = ["SegmindV2Client"]

#: Each wait between polls is this much longer than the last, up to `Timeouts.last_poll`.
_GROWTH = 1.5


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
            body = json.dumps({"output": document.get("output")}).encode()
            result = await self._audio_from_body(body, "application/json", deadline)
            return result
        except SegmindError as exc:
            exc.request_id = exc.request_id or record["request_id"]
            error = exc
            raise
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
            raise SegmindConnectionError(self._redact(type(exc).__name__)) from None
        job = _job(raw)
        record["request_id"] = job["id"]
        return job

    async def _await_result(self, job: dict[str, str], deadline: float) -> dict[str, Any]:
        """Poll the job's status with growing waits, then fetch its result."""
        status_url = self._same_origin(job.get("status_url"), f"/v2/requests/{job['id']}/status")
        result_url = self._same_origin(job.get("response_url"), f"/v2/requests/{job['id']}")
        wait = self.timeouts.first_poll
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise JobTimeoutError(f"job {job['id']} still unfinished at the deadline")
            await asyncio.sleep(min(wait, left))
            wait = min(self.timeouts.last_poll, wait * _GROWTH)
            state = await self._poll(status_url, deadline)
            if state in {"COMPLETED", "FAILED"}:  # A failed job's result carries its reason.
                document = await self._poll_json(result_url, deadline)
                if document is None:
                    continue
                if str(document.get("status", "")).upper() == "FAILED":
                    raise JobFailedError(
                        "the job FAILED", upstream_message=self._job_message(document)
                    )
                if document.get("status") == "COMPLETED":
                    return document

    async def _poll(self, url: str, deadline: float) -> str | None:
        document = await self._poll_json(url, deadline)
        state = document.get("status") if document is not None else None
        return state.upper() if isinstance(state, str) else None

    async def _poll_json(self, url: str, deadline: float) -> dict[str, Any] | None:
        """One poll: the answer, or None for a blip worth polling through (drop, timeout,
        5xx, 202); errors that polling cannot fix (key, expiry, a failed job) raise."""
        try:
            async with self._session.get(
                url,
                headers=self._headers(url),
                timeout=self._poll_timeout(deadline),
                allow_redirects=False,
            ) as response:
                if response.status == 202:
                    return None
                if response.status != 200:
                    error = await self._status_error(response)
                    if isinstance(error, ModelNotFoundError):
                        raise JobTimeoutError("the job's result is gone (kept one hour)") from None
                    if isinstance(error, RateLimitedError):
                        last = self.timeouts.last_poll
                        await asyncio.sleep(min(error.retry_after or last, last))
                        return None
                    if error.retryable:
                        return None
                    raise error
                raw = await _read_capped(response)
        except (TimeoutError, aiohttp.ClientError, SegmindTimeoutError, SegmindConnectionError):
            return None
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return document if isinstance(document, dict) else None

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
