"""The one request pipeline: every way of asking for speech (`/speak`, "Speak this message",
narration) goes through `SpeechService.begin`, so each gets the member's saved defaults,
validation, splitting, the server's rules and quota, and the stream, in that order and
before anything is spent.

Cogs translate Discord to these calls and back; the logic lives here, with no Discord types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bot import audio as audio_mod
from bot.audio import Audio
from bot.audio.voice_message import VoiceMessage
from bot.config import Settings
from bot.errors import QuotaExceededError
from bot.speech.access import Caller, Requester, check_access
from bot.speech.chunking import split_text
from bot.speech.narration import member_voice
from bot.speech.pronunciations import Pronunciations
from bot.speech.request import SpeechRequest, build_request, looks_like_dialogue, text_limit
from bot.speech.styles import apply_style
from bot.storage import GuildSettings, MemberSettings, Storage
from bot.synthesis.cache import Cache
from bot.synthesis.clips import Clip, clip_filename, join_to_ogg_opus, voice_message_of
from bot.synthesis.deadline import estimate_seconds, too_slow
from bot.synthesis.quota import QuotaLedger, Reservation
from bot.synthesis.scheduler import Scheduler
from bot.synthesis.stream import SharedFlights, SpeechSource, SpeechStream
from bot.synthesis.turns import MemberTurns
from bot.synthesis.usage import UsageRecorder, day_start, next_reset, paid_calls

__all__ = [
    "Admission",
    "Clip",
    "Destination",
    "SpeakContext",
    "SpeakOptions",
    "SpeechService",
    "clip_filename",
    "pronounce",
]


class Destination(StrEnum):
    """Where the speech goes, which decides the rules that apply to it.

    Chat needs speech files allowed; voice and narration need voice allowed and start with a
    short first chunk so the first words are heard sooner. Narration reads every message (no
    cooldown), in the member's own voice or the one their id always gets.
    """

    CHAT = "chat"
    VOICE = "voice"
    NARRATION = "narration"

    @property
    def in_voice(self) -> bool:
        return self is not Destination.CHAT


@dataclass(frozen=True, slots=True)
class SpeakOptions:
    """What the member chose for this request; anything left out comes from their defaults."""

    voice: str | None = None
    voice_2: str | None = None
    temperature: float | None = None
    style: str | None = None
    #: "slow", "normal" or "fast": a direction to Gemini, like `style`.
    pace: str | None = None
    #: A new take: skip the cache and any identical call in flight.
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """A request that passed every rule: the calls it may make, for whom, and by when.

    Its calls already count against the member's daily quota (`reservation`): `start` it, or
    `release` it if it will not be started, or they stay counted until the process ends.
    """

    requester: Requester
    requests: tuple[SpeechRequest, ...]
    fresh: bool = False
    #: Event-loop time by which every chunk must be made (a chat reply's window), if any.
    deadline: float | None = None
    reservation: Reservation = field(default_factory=Reservation)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def release(self) -> None:
        """Not starting after all (narration that did not join voice): its calls no longer
        count against the quota. Harmless twice, and after `start` (the stream has them)."""
        self.reservation.abandon()


@dataclass(frozen=True, slots=True)
class SpeakContext:
    """Who asks and under which rules: loaded once per command, before anything is spent."""

    caller: Caller
    member: MemberSettings
    guild: GuildSettings | None


class SpeechService:
    """The one way in for speech: `begin` applies a member's defaults and a server's rules
    before anything is spent, and the render helpers turn the result into what Discord plays
    or posts. Cogs call it; it never sees a Discord type."""

    def __init__(
        self,
        settings: Settings,
        scheduler: Scheduler,
        *,
        storage: Storage | None = None,
        usage: UsageRecorder | None = None,
        cache: Cache | None = None,
        executor: Executor | None = None,
        flights: SharedFlights | None = None,
        turns: MemberTurns | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        #: What members have outstanding against their daily quotas: shared with the usage
        #: recorder, which counts each paid call until its record is written.
        self.quota = usage.quota if usage is not None else QuotaLedger()
        self._executor = executor
        self.source = SpeechSource(
            scheduler,
            model=settings.segmind_model,
            cache=cache,
            usage=usage,
            executor=executor,
            flights=flights,
            turns=turns,
        )

    async def begin(
        self,
        caller: Caller,
        text: str,
        options: SpeakOptions = SpeakOptions(),
        *,
        destination: Destination = Destination.CHAT,
        guild: GuildSettings | None = None,
        member: MemberSettings | None = None,
        within: float | None = None,
        short_first: bool = True,
    ) -> SpeechStream:
        """Start making `text` into speech for `caller`, or raise a `BotError` saying why not:
        `admit`, then `start`. See `admit` for the arguments."""
        admission = await self.admit(
            caller,
            text,
            options,
            destination=destination,
            guild=guild,
            member=member,
            within=within,
            short_first=short_first,
        )
        return await self.start(admission)

    async def admit(
        self,
        caller: Caller,
        text: str,
        options: SpeakOptions = SpeakOptions(),
        *,
        destination: Destination = Destination.CHAT,
        guild: GuildSettings | None = None,
        member: MemberSettings | None = None,
        within: float | None = None,
        short_first: bool = True,
    ) -> Admission:
        """Every rule a request must pass, checked before anything is spent or the bot moves:
        invalid input, the server's rules and the daily quota raise a `BotError` here. A
        caller that must do something between the rules and the spending (narration joins
        voice only for a message it will read) admits first and `start`s after, or
        `release`s the admission: its calls count against the quota from here on.

        `guild` and `member` pass settings the caller already loaded, so they are not read
        twice. `within` is the seconds the whole message must be made in (a chat reply's
        window): refused up front if the queue cannot plausibly meet it, and what is left
        unmade when it passes is withdrawn. `short_first=False` keeps voice from splitting
        off a short first chunk: for narration that is behind, whose first words are late
        anyway, one call matters more.
        """
        ctx = await self.context(caller, guild=guild, member=member)
        text = pronounce(text, ctx.guild)
        voice, voice_2 = options.voice, options.voice_2
        if destination is Destination.NARRATION:
            voice = voice or member_voice(ctx.member)
        elif not voice_2 and looks_like_dialogue(text):
            # A member's second voice is for the dialogues they write; narration's
            # two-speaker calls name both voices themselves.
            voice_2 = ctx.member.voice_2
        requests = self.prepare_chunks(
            text,
            voice=voice,
            voice_2=voice_2,
            temperature=options.temperature,
            style=options.style,
            pace=options.pace,
            first_max=(
                self.settings.first_chunk_chars if destination.in_voice and short_first else None
            ),
            ctx=ctx,
        )
        reservation = await self.check(ctx, voice=destination.in_voice, calls=len(requests))
        deadline = None
        if within is not None:
            refusal = too_slow(self.estimate(len(requests)), within, len(requests))
            if refusal is not None:
                reservation.abandon()
                raise refusal
            deadline = asyncio.get_running_loop().time() + within
        # Narration reads every message: no cooldown, and no per-member waiting cap.
        narration = destination is Destination.NARRATION
        if narration:
            cooldown: float | None = 0.0
        else:
            cooldown = ctx.guild.user_cooldown if ctx.guild is not None else None
        requester = Requester(caller.user_id, caller.guild_id, cooldown, capped=not narration)
        return Admission(
            requester,
            tuple(requests),
            fresh=options.fresh,
            deadline=deadline,
            reservation=reservation,
        )

    async def start(self, admission: Admission) -> SpeechStream:
        """Spend what `admission` allows: its first chunk is queued (or found in the cache);
        a refusal of that first chunk (a cooldown, a full queue) raises here, and gives its
        calls back to the quota. The stream gives each chunk's back as it settles."""
        reservation = admission.reservation.take()
        try:
            return await self.stream(
                admission.requester,
                admission.requests,
                fresh=admission.fresh,
                deadline=admission.deadline,
                reservation=reservation,
            )
        except BaseException:
            # The stream gave back what it refused; this is for a stream never made at all.
            reservation.release(reservation.held)
            raise

    def later(self, admission: Admission) -> SpeechStream:
        """Accept `admission` now and make it later: a stream whose `start` queues its first
        call when the bot may be heard (a Stage's audience waits for an invitation), so
        nothing is spent for nobody. The member's cooldown is checked (a refusal raises here)
        and started now, as for any message, so the calls it queues later wait for none; its
        calls count against the quota from now, like any admitted message's."""
        requester = admission.requester
        reservation = admission.reservation.take()
        try:
            self.source.scheduler.take_turn(requester)
        except BaseException:
            reservation.release(reservation.held)
            raise
        # Its calls stay counted against the quota while it waits: withdrawn unmade (the wait
        # ran out, a /stop), the stream gives them back.
        return SpeechStream(
            self.source,
            replace(requester, cooldown=0.0),
            admission.requests,
            parallel=self.settings.chunk_parallelism,
            fresh=admission.fresh,
            deadline=admission.deadline,
            reservation=reservation,
        )

    async def prefers_voice_message(self, caller: Caller) -> bool:
        """Whether the member asked for their /speak speech as voice messages by default."""
        if self.storage is None:
            return False
        return bool((await self.storage.get_member(caller.user_id)).voice_message)

    def text_limit(self, guild: GuildSettings | None) -> int:
        """The longest text one request may speak here (`bot.speech.request.text_limit`)."""
        return text_limit(
            self.settings.max_text_length, guild.max_text_length if guild is not None else None
        )

    async def context(
        self,
        caller: Caller,
        *,
        guild: GuildSettings | None = None,
        member: MemberSettings | None = None,
    ) -> SpeakContext:
        """The member's saved defaults and the server's rules (defaults without storage).

        `guild` and `member` pass settings the caller already loaded, so they are not read
        twice.
        """
        if self.storage is None:
            if guild is None and caller.guild_id:
                guild = GuildSettings.defaults(caller.guild_id)
            member = member or MemberSettings.defaults(caller.user_id)
            return SpeakContext(caller, member, guild)
        if member is None:
            member = await self.storage.get_member(caller.user_id)
        if guild is None and caller.guild_id:
            guild = await self.storage.get_guild(caller.guild_id)
        return SpeakContext(caller, member, guild)

    async def check(self, ctx: SpeakContext, *, voice: bool, calls: int) -> Reservation:
        """Server rules and the daily quota, checked before any call is made; the calls are
        reserved against the quota as they pass (`bot.synthesis.quota`).

        The quota counts today's paid calls in storage and what is outstanding here (admitted
        and not yet settled, or paid and not yet stored), so requests arriving together, or
        faster than calls are made, cannot pass it. Managers, and servers without a quota,
        reserve nothing.
        """
        check_access(ctx.caller, ctx.guild, voice=voice)
        quota = ctx.guild.daily_quota if ctx.guild else None
        if quota is None or self.storage is None or ctx.caller.manager:
            return Reservation()
        guild_id, user_id = ctx.caller.guild_id, ctx.caller.user_id
        # No record of this member's is written while storage is read: it would be counted
        # by neither the read nor the ledger. Counting what is outstanding and reserving have
        # no await between them, so two checks at once cannot both take the last call.
        async with self.quota.locked(guild_id, user_id):
            today = await self.storage.usage(since=day_start(), guild_id=guild_id, user_id=user_id)
            if paid_calls(today) + self.quota.outstanding(guild_id, user_id) + calls > quota:
                raise QuotaExceededError(
                    limit=quota, needed=calls, reset_at=next_reset().timestamp()
                )
            return self.quota.reserve(guild_id, user_id, calls)

    def _validate(
        self,
        text: str,
        *,
        voice: str | None = None,
        voice_2: str | None = None,
        temperature: float | None = None,
        style: str | None = None,
        pace: str | None = None,
        max_length: int | None = None,
    ) -> SpeechRequest:
        """Validate a member's input against this bot's limits; raises InvalidRequestError."""
        return build_request(
            text,
            voice=voice,
            voice_2=voice_2,
            temperature=temperature,
            style=style,
            pace=pace,
            max_length=max_length or self.settings.max_text_length,
            default_voice=self.settings.default_voice,
            default_temperature=self.settings.default_temperature,
        )

    def prepare_chunks(
        self,
        text: str,
        *,
        voice: str | None = None,
        voice_2: str | None = None,
        temperature: float | None = None,
        style: str | None = None,
        pace: str | None = None,
        first_max: int | None = None,
        ctx: SpeakContext | None = None,
    ) -> list[SpeechRequest]:
        """Validate once, then split long text into one request per chunk (same voice and
        style), so the first part can be heard while the rest is being made.

        With a context, the member's saved voice, temperature, style and pace fill the options
        they left out (the server's pace after theirs), and the server's own text limit applies.
        """
        max_length = self.settings.max_text_length
        if ctx is not None:
            voice = voice or ctx.member.voice
            temperature = ctx.member.temperature if temperature is None else temperature
            style = style if style is not None else ctx.member.style
            pace = pace or ctx.member.pace or (ctx.guild.pace if ctx.guild else None)
            max_length = self.text_limit(ctx.guild)
        whole = self._validate(
            text,
            voice=voice,
            voice_2=voice_2,
            temperature=temperature,
            style=style,
            pace=pace,
            max_length=max_length,
        )
        limit = self.settings.chunk_chars
        pieces = split_text(text.strip(), limit, first_max=first_max or limit)
        if len(pieces) <= 1:
            return [whole]
        return [replace(whole, text=apply_style(piece, style, pace)) for piece in pieces]

    def estimate(self, calls: int) -> float:
        """Roughly how long `calls` more calls take behind what is queued now."""
        scheduler = self.source.scheduler
        return estimate_seconds(
            queued=len(scheduler.queue_snapshot()),
            calls=calls,
            rpm=scheduler.effective_rpm,
            window=scheduler.config.window,
            latency=scheduler.config.initial_latency,
            parallel=self.settings.chunk_parallelism,
        )

    async def stream(
        self,
        requester: Requester,
        requests: Sequence[SpeechRequest],
        *,
        fresh: bool = False,
        deadline: float | None = None,
        reservation: Reservation | None = None,
    ) -> SpeechStream:
        """Start making a message; a refusal for its first chunk raises here, before anything
        is spent. `fresh` skips the cache and any identical call in flight, for a new take;
        `reservation` is the member's quota for it, given back chunk by chunk.
        """
        stream = SpeechStream(
            self.source,
            requester,
            requests,
            parallel=self.settings.chunk_parallelism,
            fresh=fresh,
            deadline=deadline,
            reservation=reservation,
        )
        return await stream.start()

    async def ogg_clips(
        self, audios: AsyncIterator[Audio], request: SpeechRequest
    ) -> AsyncIterator[bytes]:
        """Each chunk as an Ogg Opus clip for voice, as soon as it is made."""
        async for audio in audios:
            yield (await self.render(audio, request)).data

    async def render(self, audio: Audio, request: SpeechRequest) -> Clip:
        """One chunk as a clip to post or play."""
        return await self.render_many([audio], request)

    async def render_many(self, audios: Sequence[Audio], request: SpeechRequest) -> Clip:
        """One Ogg Opus file from one or more chunks, joined in order; a single Ogg Opus
        chunk (every normalized result, every cache hit) is passed through untouched."""
        duration = sum(audio.duration for audio in audios)
        if len(audios) == 1 and audio_mod.is_ogg_opus(audios[0].data):
            data = audios[0].data
        else:
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(self._executor, join_to_ogg_opus, list(audios))
        return Clip(data=data, duration=duration, filename=clip_filename(request))

    async def voice_message(self, audios: Sequence[Audio]) -> VoiceMessage:
        """The chunks, joined in order, as a Discord voice message (re-encoded the way the
        clients send them, with the waveform); CPU work, so it runs in the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, voice_message_of, list(audios))


def pronounce(text: str, guild: GuildSettings | None) -> str:
    """`text` with the server's own pronunciations: applied here, on the one way in, so
    /speak, "Speak this message" and narration all get them, before validation and chunking
    see the text, and the cache key (which hashes the request's text) covers them."""
    if guild is None or not guild.pronunciations:
        return text
    return Pronunciations.of(dict(guild.pronunciations)).apply(text)
