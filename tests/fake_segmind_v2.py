"""Segmind's v2 protocol (submit, then poll) on the fake server, beside v1.

v2 answers a submit at once with a job id and the URLs to poll; the job moves QUEUED →
PROCESSING → COMPLETED (or FAILED, answered as HTTP 422) and its result stays for an hour.
The same scripted faults as v1 apply to submits, so both protocols pass the same client and
CLI tests; polls have faults of their own, and a submit can be accepted and then dropped,
the money problem v2 solves: the job exists, the client must poll it, not pay again. Other
moods of a real gateway: statuses spelled in another case (`spelling`), and a job that is
unknown (HTTP 404) for its first polls (`hidden_polls`), or whose result goes missing for a
while once it is done (`result_faults` of 404).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

if TYPE_CHECKING:
    from tests.fake_segmind import FakeSegmind, Fault

__all__ = ["V2_REQUESTS_PATH", "Job", "V2Protocol"]

V2_REQUESTS_PATH = "/v2/requests"


@dataclass(slots=True)
class Job:
    """One accepted submit: billed once, when it completes."""

    id: str
    text: str
    submitted: float
    ready_at: float
    fails: bool
    charged: bool = False
    polls: int = 0
    #: Polls (status or result) still answered 404, as if the job were not yet visible.
    hidden: int = 0


class V2Protocol:
    """The v2 routes of one `FakeSegmind`; attributes are plain so tests can set the mood."""

    def __init__(self, fake: FakeSegmind) -> None:
        self.fake = fake
        self.jobs: dict[str, Job] = {}
        #: Seconds a result stays available after its submit (Segmind keeps it an hour).
        self.result_ttl = 3600.0
        #: How a finished job carries its audio: a link to fetch, or the bytes in base64.
        self.output: Literal["url", "base64"] = "url"
        #: Submits that are accepted (a job is made) and then answered with a dropped line.
        self.drop_after_accept = 0
        #: Jobs that will fail (the next N accepted).
        self.fail_next = 0
        #: Put another origin in the poll URLs, as a hostile or broken gateway might.
        self.poll_origin: str | None = None
        #: Faults for the next status or result requests (status codes and drops).
        self.poll_faults: deque[Fault] = deque()
        #: Faults for the next status polls only, and for the next result fetches only; each
        #: is met before `poll_faults`.
        self.status_faults: deque[Fault] = deque()
        self.result_faults: deque[Fault] = deque()
        #: How statuses are spelled in status and result answers ("completed", "Completed").
        self.spelling: Literal["upper", "lower", "title"] = "upper"
        #: The next accepted job answers 404 to this many polls before it is known.
        self.hidden_polls = 0
        self.status_polls = 0
        self.result_fetches = 0

    def add_routes(self, app: web.Application, model_path: str) -> None:
        app.router.add_post(model_path, self._submit)
        app.router.add_get(V2_REQUESTS_PATH + "/{id}/status", self._status)
        app.router.add_get(V2_REQUESTS_PATH + "/{id}", self._result)

    # -- submit ----------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        from tests.fake_segmind import FaultKind, RecordedRequest

        fake = self.fake
        record = RecordedRequest(received=time.monotonic(), headers=dict(request.headers))
        fake.requests.append(record)
        fault = fake._script.popleft() if fake._script else None
        record.fault = fault
        record.body = await request.read()
        with contextlib.suppress(ValueError):
            record.json_body = json.loads(record.body)
        if fault is not None and fault.before > 0:
            await asyncio.sleep(fault.before)
        if fault is not None and fault.kind is FaultKind.DROP:
            return _drop(request)
        if fault is not None and fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.seconds)
        key = request.headers.get("x-api-key")
        answer = fake._canned(fault, key) if fault is not None else None
        if answer is not None:
            record.status = answer.status
            if answer.status == 429:
                fake.rate_limited_count += 1
            return _respond(answer.status, answer.body, answer.content_type, answer.headers)
        problem = self._refusal(request, record)
        if problem is not None:
            record.status = problem.status
            return problem
        text: str = record.json_body["text"]
        now = time.monotonic()
        job = Job(
            id=uuid.uuid4().hex,
            text=text,
            submitted=now,
            ready_at=now + fake.expected_latency(text),
            fails=self.fail_next > 0,
            hidden=self.hidden_polls,
        )
        self.fail_next = max(0, self.fail_next - 1)
        self.hidden_polls = 0
        self.jobs[job.id] = job
        if self.drop_after_accept > 0:
            self.drop_after_accept -= 1
            return _drop(request)
        record.status = 200
        origin = self.poll_origin or fake.root_url
        poll = f"{origin}{V2_REQUESTS_PATH}/{job.id}"
        accepted = {
            "request_id": job.id,
            "status": self.spell("QUEUED"),
            "poll_url": f"{poll}/status",
            "status_url": f"{poll}/status",
            "response_url": poll,
        }
        if fault is not None and fault.kind is FaultKind.SLOW_BODY:
            from tests.fake_segmind import _Answer

            answer = _Answer(200, json.dumps(accepted).encode(), "application/json")
            return await fake._trickle(request, answer, fault.seconds)
        return web.json_response(accepted)

    def _refusal(self, request: web.Request, record: Any) -> web.Response | None:
        """The same checks as a v1 call, in the same order: key, rate, body, credits."""
        from tests.fake_segmind import _error, _to_response

        fake = self.fake
        key = request.headers.get("x-api-key")
        if not key or key != fake.api_key:
            return _to_response(_error(401))
        limited = fake._admit(key)
        if limited is not None:
            fake.rate_limited_count += 1
            return _to_response(limited)
        if record.json_body is None:
            return _to_response(_error(400, "Invalid JSON body"))
        problem = fake._validate(record.json_body)
        if problem is not None:
            return _to_response(_error(400, problem))
        if fake.credits <= 0:
            return _to_response(_error(406, "Insufficient credits"))
        return None

    # -- polling ---------------------------------------------------------------------------

    def _job(self, request: web.Request) -> Job | web.Response:
        from tests.fake_segmind import _error, _to_response

        if request.headers.get("x-api-key") != self.fake.api_key:
            return _to_response(_error(401))
        job = self.jobs.get(request.match_info["id"])
        if job is None or time.monotonic() - job.submitted > self.result_ttl:
            return _to_response(_error(404, "Request not found or expired"))
        if job.hidden > 0:
            job.hidden -= 1
            return _to_response(_error(404, "Request not found or expired"))
        job.polls += 1
        return job

    async def _poll_fault(
        self, request: web.Request, own: deque[Fault]
    ) -> web.StreamResponse | None:
        """The next scripted fault for this kind of poll (``own`` first), if any: None
        answers normally (after a DELAY fault's wait)."""
        from tests.fake_segmind import FaultKind

        queue = own if own else self.poll_faults
        fault = queue.popleft() if queue else None
        if fault is None:
            return None
        await asyncio.sleep(fault.before)
        if fault.kind is FaultKind.DROP:
            return _drop(request)
        if fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.seconds)
            return None
        answer = self.fake._canned(fault, request.headers.get("x-api-key"))
        if answer is None:
            return None
        return _respond(answer.status, answer.body, answer.content_type, answer.headers)

    def spell(self, status: str) -> str:
        """A status as this gateway spells it."""
        if self.spelling == "lower":
            return status.lower()
        if self.spelling == "title":
            return status.title()
        return status

    def state(self, job: Job) -> str:
        now = time.monotonic()
        if now < job.submitted + 0.2 * (job.ready_at - job.submitted):
            return "QUEUED"
        if now < job.ready_at:
            return "PROCESSING"
        return "FAILED" if job.fails else "COMPLETED"

    async def _status(self, request: web.Request) -> web.StreamResponse:
        self.status_polls += 1
        faulty = await self._poll_fault(request, self.status_faults)
        if faulty is not None:
            return faulty
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        return web.json_response({"request_id": job.id, "status": self.spell(self.state(job))})

    async def _result(self, request: web.Request) -> web.StreamResponse:
        self.result_fetches += 1
        faulty = await self._poll_fault(request, self.result_faults)
        if faulty is not None:
            return faulty
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        state = self.state(job)
        if state == "FAILED":
            body = {"request_id": job.id, "status": self.spell(state), "error": "Generation failed"}
            return web.json_response(body, status=422)
        if state != "COMPLETED":
            return web.json_response(
                {"request_id": job.id, "status": self.spell(state)}, status=202
            )
        return web.json_response(await self._completed(job))

    async def _completed(self, job: Job) -> dict[str, Any]:
        fake = self.fake
        shape = fake.shape
        from tests.fake_segmind import _FORMATS

        audio = await fake._audio(fake.expected_duration(job.text), _FORMATS[shape])
        if not job.charged:
            job.charged = True
            fake.credits = round(fake.credits - fake.cost, 9)
        if self.output == "base64":
            output = base64.b64encode(audio).decode("ascii")
        else:
            name = f"{job.id}.audio"
            fake.files[name] = audio
            output = f"{fake.root_url}/files/{name}"
        took = job.ready_at - job.submitted
        return {
            "request_id": job.id,
            "status": self.spell("COMPLETED"),
            "output": output,
            "metrics": {
                "cost": fake.cost,
                "remaining_credits": fake.credits,
                "inference_time": round(0.8 * took, 3),
                "queue_time": round(0.2 * took, 3),
                "total_time": round(took, 3),
            },
        }


def _drop(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.close()
    # Writing to the closed transport fails quietly inside aiohttp: nothing is sent.
    return web.Response(status=500)


def _respond(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    response = web.Response(status=status, body=body, headers=headers)
    if content_type:
        response.headers["Content-Type"] = content_type
    return response
