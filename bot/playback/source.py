"""Ogg Opus bytes as a discord.py audio source: each 20 ms packet is passed straight through.

The chat attachment is already Opus at 48 kHz in 20 ms frames, exactly what Discord voice
carries, so playing needs no ffmpeg process, no temporary file and no Opus encoder.
"""

from __future__ import annotations

import io

import discord
from discord.oggparse import OggError, OggStream

from bot.errors import AudioError

__all__ = ["FRAME_SECONDS", "OggOpusSource", "dave_supported"]

FRAME_SECONDS = 0.020


class OggOpusSource(discord.AudioSource):
    def __init__(self, data: bytes) -> None:
        try:
            packets = list(OggStream(io.BytesIO(data)).iter_packets())
        except OggError as exc:
            raise AudioError(f"not an Ogg stream ({exc})") from None
        if len(packets) < 2 or not packets[0].startswith(b"OpusHead"):
            raise AudioError("not Ogg Opus (no OpusHead)")
        # Packets 0 and 1 are the OpusHead and OpusTags headers, not audio.
        self._packets = packets[2:]
        self._index = 0

    @property
    def packet_count(self) -> int:
        return len(self._packets)

    @property
    def duration(self) -> float:
        return len(self._packets) * FRAME_SECONDS

    def read(self) -> bytes:
        """The next 20 ms Opus packet; b'' ends playback (discord.py's contract)."""
        if self._index >= len(self._packets):
            return b""
        packet = self._packets[self._index]
        self._index += 1
        return packet

    def is_opus(self) -> bool:
        return True


def dave_supported() -> bool:
    """Whether discord.py can join end-to-end encrypted (DAVE) voice: it needs `davey`."""
    from discord import voice_state

    return bool(voice_state.has_dave)
