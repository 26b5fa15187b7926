"""Identical calls in flight on several processes: one call, its answer shared through Redis.

Each process coalesces identical requests among its own members (`stream.py`); this is the
same across processes, and it sits *before* the scheduler: only the process that calls ever
holds a ticket or a rate slot, so the shared window counts calls, not waits.

* A process that misses its cache claims the request's key (`SET NX` with a lease, a token of
  its own as the value). Claimed: it queues the call as usual, renews the lease while the call
  waits and runs, then leaves the answer under its own key for `keep` seconds and releases the
  claim (compare-and-delete, so an expired claim someone else took is kept). With a shared
  clip tier the audio is stored there, once, in the same script, and the answer only points
  to it (the clip's bytes must not go up twice); without one (the cache off, or a clip too big
  for it) the answer carries the audio itself, for the waiters whatever the cache does. A
  pointer whose clip is gone (evicted to fit the budget within `keep`) counts as no answer.
* Not claimed: another process is calling. The waiter waits for the answer, holding no ticket
  and no slot. One poller per process asks Redis about every key it waits for in one round
  trip every `poll` seconds (a burst of waiters must not cost a round trip each: on a small
  machine that CPU delays the calls themselves). A claim that disappears without an answer
  (the claimant's call failed, or it died and its lease ran out) is claimed by the next poll,
  and that process calls itself.
* Redis unreachable, or slower than `REDIS_BUDGET`: every process calls alone (a `SoloClaim`),
  logged once per outage; the member is never failed, nor kept waiting, for the coordination.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from functools import partial
from typing import Any

from redis.asyncio import Redis

from bot.audio import Audio
from bot.synthesis.cluster.clips import (
    STORE_CLIP,
    SharedClips,
    clip_key,
    decode_audio,
    encode_audio,
)
from bot.synthesis.cluster.link import OutageNotice, RedisLink

__all__ = ["RedisClaim", "RedisFlights", "SoloClaim"]

log = logging.getLogger(__name__)

#: What an answer says when it is the clip stored for the key in the shared tier.
IN_CLIP = "=clip"

#: Lua: the answer left under `answer`: its bytes, or the clip it points to (false if neither
#: is there any more: the claim is then free to take).
_ANSWER = f"""
local function answer_of(answer, clip)
  local value = redis.call('GET', answer)
  if value == '{IN_CLIP}' then return redis.call('GET', clip) end
  return value
end
"""

#: KEYS: claim, answer, clip. ARGV: token, lease ms.
#: Returns {1, answer} if the answer is there, {2} if this token now holds the claim, else {0}.
_ATTEMPT = (
    _ANSWER
    + """
local answer = answer_of(KEYS[2], KEYS[3])
if answer then return {1, answer} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
)

#: KEYS: the claim of each key. ARGV: a token for each key, lease ms, the prefix.
#: Returns, for each key in turn, what `_ATTEMPT` returns for it. The answer's and the clip's
#: names are made here from the claim's (the same hash slot): every process polls every key
#: it waits for many times a second, and three names a key tripled those bytes.
_POLL = (
    _ANSWER
    + """
local n = #KEYS
local lease = ARGV[n + 1]
local prefix = ARGV[n + 2]
local skip = #prefix + #'claim:' + 1
local out = {}
for i = 1, n do
  local key = string.sub(KEYS[i], skip)
  local answer = answer_of(prefix .. 'answer:' .. key, prefix .. 'clip:' .. key)
  if answer then
    out[i] = {1, answer}
  elseif redis.call('SET', KEYS[i], ARGV[i], 'NX', 'PX', lease) then
    out[i] = {2}
  else
    out[i] = {0}
  end
end
return out
"""
)

#: KEYS: claim, answer. ARGV: token, answer, keep ms. Leaves the answer, releases the claim.
_PUBLISH = """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

#: KEYS: claim, answer, then `store_clip`'s. ARGV: token, keep ms, then `store_clip`'s.
#: Stores the clip in the shared tier (within its budget), leaves an answer pointing to it,
#: releases the claim; returns how many clips were evicted to fit it.
_PUBLISH_CLIP = (
    STORE_CLIP
    + f"""
local evicted = store_clip(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[5],
  tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
redis.call('SET', KEYS[2], '{IN_CLIP}', 'PX', ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return evicted
"""
)

#: KEYS: claim. ARGV: token. Deletes the claim only if it is still this token's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS: claim. ARGV: token, lease ms. Extends the claim only if it is still this token's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class SoloClaim:
    """Redis could not be asked: this process calls alone, with nothing to share or release."""

    async def publish(self, audio: Audio) -> None:
        return None

    async def release(self) -> None:
        return None


class RedisClaim:
    """This process calls for the key: the lease is renewed until `publish` or `release`."""

    def __init__(self, flights: RedisFlights, key: str, token: str) -> None:
        self._flights = flights
        self._key = key
        self.token = token
        self._renewal: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            flights._renew_forever(key, token), name=f"flight-lease-{key[:12]}"
        )

    async def publish(self, audio: Audio) -> None:
        """Leave the answer for the waiters and release the claim (never raises)."""
        self._stop_renewing()
        await self._flights._publish(self._key, self.token, audio)

    async def release(self) -> None:
        """No answer (failed or withdrawn): free the key at once so a waiter calls itself."""
        self._stop_renewing()
        await self._flights._release(self._key, self.token)

    def _stop_renewing(self) -> None:
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()


class RedisFlights:
    """The cross-process half of coalescing (see the module); `SpeechSource` asks it on a miss.

    `lease`: how long a claim outlives a claimant that stopped renewing it (died);
    `keep`: how long an answer waits for the waiters that poll for it;
    `clips`: the shared clip tier, if the cache has one: an answer that fits it is stored
    there once, as the clip, and the answer points to it (its bytes go up once for both).
    Each round trip is one `RedisLink.run`: within `REDIS_BUDGET`, refused at once while
    Redis is down (the process then calls alone).
    """

    def __init__(
        self,
        redis: Redis | RedisLink,
        *,
        prefix: str,
        lease: float = 10.0,
        keep: float = 60.0,
        poll: float = 0.05,
        clips: SharedClips | None = None,
    ) -> None:
        self._link = redis if isinstance(redis, RedisLink) else RedisLink(redis)
        redis = self._link.redis
        if clips is not None and clips.prefix != prefix:
            raise ValueError("the shared clips must be named with the flights' own prefix")
        self._prefix = prefix
        #: An answer could not be shared since the last one that could (told once).
        self._unshared = False
        self._clips = clips
        self.lease = lease
        self._lease_ms = _ms(lease)
        self._keep_ms = _ms(keep)
        self._poll = poll
        self._me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._tokens = itertools.count(1)
        self._attempt_script = redis.register_script(_ATTEMPT)
        self._publish_script = redis.register_script(_PUBLISH)
        self._publish_clip_script = redis.register_script(_PUBLISH_CLIP)
        self._release_script = redis.register_script(_RELEASE)
        self._renew_script = redis.register_script(_RENEW)
        self._poll_script = redis.register_script(_POLL)
        self._waiting: dict[str, list[asyncio.Future[Audio | RedisClaim | SoloClaim]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._notice = OutageNotice(
            log,
            lost="Redis is unreachable, so identical calls are no longer shared with the other "
            "processes (each calls alone until it is back): %s",
            back="Redis is back: identical calls are shared with the other processes again",
        )
        self._chores: set[asyncio.Task[None]] = set()
        #: Rounds of polling for answers (tests watch waiters stop).
        self.polls = 0

    def claim_key(self, key: str) -> str:
        return self._prefix + "claim:" + key

    def answer_key(self, key: str) -> str:
        return self._prefix + "answer:" + key

    def _keys(self, key: str) -> tuple[str, str, str]:
        """Claim, answer, and the clip an answer may point to."""
        return self.claim_key(key), self.answer_key(key), clip_key(self._prefix, key)

    async def claim(self, key: str) -> Audio | RedisClaim | SoloClaim | None:
        """One try: the answer if another process just made it, a claim (this process calls),
        or None while another process is calling."""
        return await self._attempt(key)

    async def wait(self, key: str) -> Audio | RedisClaim | SoloClaim:
        """Until the answer is there, or the key is free and now claimed by this process
        (the claimant failed or died). Cancelling it leaves no claim behind."""
        future: asyncio.Future[Audio | RedisClaim | SoloClaim]
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="flight-poller"
            )
        try:
            return await future
        except asyncio.CancelledError:
            outcome = future.result() if future.done() and not future.cancelled() else None
            if isinstance(outcome, RedisClaim):  # claimed for a waiter that just left
                self._later(outcome.release())
            raise
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiting[key]

    async def _poll_forever(self) -> None:
        """Every `poll` s, one round trip for every key waited for, while any is."""
        while self._waiting:
            await asyncio.sleep(self._poll)
            keys = list(self._waiting)
            if not keys:
                break
            self.polls += 1
            tokens = [f"{self._me}-{next(self._tokens)}" for _ in keys]
            claims = [self.claim_key(key) for key in keys]
            try:
                answers: Any = await self._link.run(
                    partial(
                        self._poll_script,
                        keys=claims,
                        args=[*tokens, self._lease_ms, self._prefix],
                    )
                )
            except Exception as exc:  # everyone waiting calls alone
                self._notice.lost(exc)
                answers = [[3]] * len(keys)
            else:
                self._notice.back()
            for key, token, answer in zip(keys, tokens, answers, strict=True):
                self._deliver(key, token, answer)

    def _deliver(self, key: str, token: str, answer: Any) -> None:
        """Hand one key's poll to a waiter: the answer to all, a claim to one."""
        kind = int(answer[0])
        waiters = [f for f in self._waiting.get(key, []) if not f.done()]
        if kind == 2 and not waiters:  # every waiter left during the round trip
            self._later(self._release(key, token))
            return
        if kind == 0:
            return
        if kind == 2:
            waiters[0].set_result(RedisClaim(self, key, token))
            return
        audio = self._received(key, answer[1]) if kind == 1 else None
        if kind == 1 and audio is None:
            log.warning("An answer shared by another process could not be read; calling alone")
        for future in waiters:
            future.set_result(audio if audio is not None else SoloClaim())

    async def _attempt(self, key: str) -> Audio | RedisClaim | SoloClaim | None:
        token = f"{self._me}-{next(self._tokens)}"
        try:
            answer: Any = await self._link.run(
                lambda: self._attempt_script(
                    keys=list(self._keys(key)),
                    args=[token, self._lease_ms],
                )
            )
        except asyncio.CancelledError:
            # The script may have run: a claim taken for nobody would hold others a lease.
            self._later(self._release(key, token))
            raise
        except Exception as exc:
            self._notice.lost(exc)
            return SoloClaim()
        self._notice.back()
        if int(answer[0]) == 2:
            return RedisClaim(self, key, token)
        if int(answer[0]) == 1:
            audio = self._received(key, answer[1])
            if audio is not None:
                return audio
            log.warning("An answer shared by another process could not be read; calling alone")
            return SoloClaim()
        return None

    def _received(self, key: str, value: Any) -> Audio | None:
        """Another process's answer: in Redis already, so this process never sends it up."""
        audio = decode_audio(value)
        if audio is not None and self._clips is not None:
            self._clips.remember(key, audio)
        return audio

    async def _publish(self, key: str, token: str, audio: Audio) -> None:
        claim, answer, _ = self._keys(key)
        clips = self._clips
        try:
            value = encode_audio(audio)
            if clips is not None and clips.fits(value):
                await self._link.preload(self._publish_clip_script)
                evicted: Any = await self._link.run(
                    lambda: self._publish_clip_script(
                        keys=[claim, answer, *clips.store_keys(key)],
                        args=[token, self._keep_ms, *clips.store_args(key, value)],
                    )
                )
                clips.evicted += int(evicted)
                clips.remember(key, audio)
            else:
                await self._link.preload(self._publish_script)
                await self._link.run(
                    lambda: self._publish_script(
                        keys=[claim, answer], args=[token, value, self._keep_ms]
                    )
                )
            self._unshared = False
        except Exception as exc:  # the waiters' next poll finds the claim gone and calls
            # Told once an outage: each further answer it strands is not news.
            level = logging.DEBUG if self._unshared else logging.WARNING
            self._unshared = True
            log.log(
                level,
                "Could not share a call's answer with the other processes: %s",
                str(exc) or type(exc).__name__,
            )

    async def _release(self, key: str, token: str) -> None:
        try:
            await self._link.run(
                lambda: self._release_script(keys=[self.claim_key(key)], args=[token])
            )
        except Exception as exc:  # it expires with its lease anyway
            log.warning("Could not release a shared call's claim: %s", exc)

    async def _renew_forever(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._link.run(
                    lambda: self._renew_script(
                        keys=[self.claim_key(key)], args=[token, self._lease_ms]
                    )
                )
            except Exception as exc:  # a missed renewal: the next one may still make it
                log.debug("Could not renew a shared call's claim: %s", exc)

    def _later(self, what: Any) -> None:
        """Run `what` (a coroutine) to its end even though its caller was cancelled."""
        task = asyncio.get_running_loop().create_task(what)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def settle(self) -> None:
        """Wait for the poller to stop (nobody waits any more) and for releases sent on
        behalf of waiters that left (shutdown, tests)."""
        if self._poller is not None:
            await asyncio.gather(self._poller, return_exceptions=True)
        while self._chores:
            await asyncio.gather(*list(self._chores), return_exceptions=True)
