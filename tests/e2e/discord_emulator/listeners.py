"""Members' clients in a DAVE call: each has its own davey session in the channel's MLS group
and decrypts, as a Discord client does, every frame the bot sends, then decodes the Opus.

A client answers its voice server as a remote one would: after `latency` seconds per
message, and commits `commit_delay` seconds after a proposal (a client on the other side of
the internet), so the bot, on the same machine, usually commits first. A frame without
DAVE's 0xFAFA marker is dropped, as clients do outside a protocol transition.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

import davey

from tests.e2e.discord_emulator import dave, mls, rtp

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

MARKER = b"\xfa\xfa"


class Listener:
    """One member's client, connected to a voice server's DAVE group for its channel."""

    def __init__(
        self,
        user_id: int,
        channel_id: int,
        bot_id: int,
        *,
        on_change: Callable[[], None],
        latency: float = 0.02,
        commit_delay: float = 0.2,
    ) -> None:
        self.user_id = user_id
        self.channel_id = channel_id
        self.bot_id = bot_id
        self.latency = latency
        self.commit_delay = commit_delay
        self.session = davey.DaveSession(1, user_id, channel_id)
        self.audio = rtp.ReceivedAudio()
        self.frames = 0  # Every frame of the bot's this client received.
        self.decrypted = 0
        self.undecryptable = 0
        self.unmarked = 0  # No 0xFAFA: not DAVE at all.
        self.errors: list[str] = []
        self.server: dave.DaveServer | None = None
        self._stream: rtp.OpusStream | None = None
        self._on_change = on_change
        self._inbox: asyncio.Queue[tuple[float, int, bytes | dict[str, Any]]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"listener-{user_id}")
        self._commits: set[asyncio.Task[None]] = set()
        self._latest: bytes | None = None  # The commit davey holds for this epoch.
        self._sent: bytes | None = None  # The commit sent this epoch, not yet announced.
        self._held: list[bytes] = []

    @property
    def in_group(self) -> bool:
        return bool(self.session.ready)

    def reset(self) -> None:
        self.session.reinit(1, self.user_id, self.channel_id)
        self._latest, self._sent, self._held = None, None, []
        while not self._inbox.empty():
            self._inbox.get_nowait()

    async def close(self) -> None:
        for task in (self._task, *self._commits):
            task.cancel()
        await asyncio.gather(self._task, *self._commits, return_exceptions=True)

    # -- the voice server's side ---------------------------------------------------------------

    async def send_json(self, op: int, data: dict[str, Any]) -> None:
        self._inbox.put_nowait((self._due(), op, data))

    async def send_binary(self, op: int, payload: bytes) -> None:
        self._inbox.put_nowait((self._due(), op, payload))

    def _due(self) -> float:
        return asyncio.get_running_loop().time() + self.latency

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, op, data = await self._inbox.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            try:
                await self._handle(op, data)
            except Exception as exc:  # A client's failure is the test's evidence.
                self.errors.append(f"op {op}: {exc}")
                log.info("listener %s: op %s failed: %s", self.user_id, op, exc)
            self._on_change()

    async def _reply_binary(self, op: int, payload: bytes) -> None:
        if self.server is not None:
            await self.server.binary(self, op, payload)

    async def _reply_json(self, op: int, data: dict[str, Any]) -> None:
        if self.server is not None:
            await self.server.json(self, op, data)

    async def _handle(self, op: int, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            if op == dave.PREPARE_EPOCH and data.get("epoch") == 1:
                self.reset()
                await self._reply_binary(
                    dave.KEY_PACKAGE, self.session.get_serialized_key_package()
                )
            return
        session = self.session
        if op == dave.EXTERNAL_SENDER:
            session.set_external_sender(data)
            await self._reply_binary(dave.KEY_PACKAGE, session.get_serialized_key_package())
        elif op == dave.PROPOSALS:
            if self._sent is not None:
                # A commit of ours is in flight: processing these now would make davey hold
                # a newer commit, and merge that one if ours is announced (libdave keeps the
                # one it sent). They wait for the announcement.
                self._held.append(data)
                return
            self._propose(data)
        elif op in (dave.ANNOUNCE_COMMIT, dave.WELCOME):
            (transition,) = struct.unpack_from(">H", data)
            sent, held = self._sent, self._held
            self._sent, self._held, self._latest = None, [], None
            try:
                if op == dave.ANNOUNCE_COMMIT:
                    if sent != data[2:]:  # Someone else's: it may name what was held.
                        for proposals in held:
                            self._propose(proposals, commit=False)
                    session.process_commit(data[2:])
                else:
                    session.process_welcome(data[2:])
            except ValueError:
                await self._reply_json(dave.INVALID_COMMIT_WELCOME, {"transition_id": transition})
                self.reset()
                await self._reply_binary(dave.KEY_PACKAGE, session.get_serialized_key_package())
                raise
            await self._reply_json(dave.TRANSITION_READY, {"transition_id": transition})

    def _propose(self, data: bytes, *, commit: bool = True) -> None:
        kind = (
            davey.ProposalsOperationType.append
            if data[0] == dave.APPEND
            else davey.ProposalsOperationType.revoke
        )
        result = self.session.process_proposals(kind, data[1:])
        if result is None or not commit:
            return
        first = self._latest is None
        self._latest = result.commit + (result.welcome or b"")
        if first:
            self._commit_later(self.session.epoch)

    def _commit_later(self, epoch: int | None) -> None:
        """One commit per epoch, of everything proposed until it goes, `commit_delay` s
        after the first proposal; none once the epoch has moved on."""

        async def commit() -> None:
            await asyncio.sleep(self.commit_delay)
            latest = self._latest
            if latest is None or self._sent is not None or self.session.epoch != epoch:
                return
            self._sent = mls.read_commit(latest).message
            await self._reply_binary(dave.COMMIT_WELCOME, latest)

        task = asyncio.create_task(commit())
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    # -- media --------------------------------------------------------------------------------

    def hear(self, packet: rtp.RtpPacket) -> bytes | None:
        """One of the bot's frames, forwarded by the SFU: the Opus inside, if this client
        could decrypt it (then also decoded into `audio`)."""
        self.frames += 1
        if packet.opus == rtp.OPUS_SILENCE:  # Passed through by DAVE, as it is.
            self._feed(packet, packet.opus)
            return packet.opus
        if not packet.opus.endswith(MARKER):
            self.unmarked += 1
            return None
        try:
            opus = self.session.decrypt(self.bot_id, davey.MediaType.audio, packet.opus)
        except ValueError:
            self.undecryptable += 1
            return None
        self.decrypted += 1
        self._feed(packet, opus)
        return opus

    def _feed(self, packet: rtp.RtpPacket, opus: bytes) -> None:
        if self._stream is None or self._stream.ssrc != packet.ssrc:
            self._stream = rtp.OpusStream(packet.ssrc)
        self._stream.feed(_with(packet, opus), self.audio)


def _with(packet: rtp.RtpPacket, opus: bytes) -> rtp.RtpPacket:
    return rtp.RtpPacket(packet.sequence, packet.timestamp, packet.ssrc, packet.nonce, opus)
