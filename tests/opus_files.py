"""Real Ogg Opus made with PyAV in any frame size, channel count and mode, and an Ogg page
editor to turn it into the lies an upstream could tell (checksums recomputed with the
independent pure-Python CRC of `tests.hostile`, so a forged page is valid unless a test says
otherwise)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field, replace

import av

from bot.audio import Pcm, resample
from tests.hostile import ogg_crc
from tests.signals import tone

__all__ = ["Page", "join_pages", "lacing_for", "real_opus", "split_pages"]

_HEADER = struct.Struct("<4sBBqIIIB")


def real_opus(
    seconds: float,
    *,
    frame_ms: float = 20,
    channels: int = 1,
    application: str = "audio",
    bitrate: int = 48_000,
    rate: int = 48_000,
) -> bytes:
    """Ogg Opus of the test tone from libopus through FFmpeg's muxer, as an API might send it.

    ``application`` "voip" makes SILK and hybrid frames, "lowdelay" CELT only.
    """
    pcm: Pcm = resample(tone(seconds), rate, channels)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = f"{channels}c"
        stream.format = "s16"
        stream.bit_rate = bitrate
        stream.codec_context.options = {
            "frame_duration": str(frame_ms),
            "application": application,
        }
        container.start_encoding()
        frame = av.AudioFrame(format="s16", layout=f"{channels}c", samples=pcm.frame_count)
        frame.planes[0].update(pcm.data)
        frame.sample_rate = rate
        frame.pts = 0
        if pcm.frame_count:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@dataclass
class Page:
    """One Ogg page, its packets' pieces given by its lacing values."""

    flags: int
    granule: int
    serial: int
    sequence: int
    lacing: bytes
    body: bytes
    crc: int | None = field(default=None)  # None: recomputed when joined

    def with_(self, **changes: object) -> Page:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def packets(self) -> list[bytes]:
        """The packets completed on this page (a page that only starts or continues one
        has none), assuming it starts with a fresh packet."""
        found, start, length = [], 0, 0
        for value in self.lacing:
            length += value
            if value < 255:
                found.append(self.body[start : start + length])
                start, length = start + length, 0
        return found

    def with_packets(self, packets: list[bytes]) -> Page:
        """The same page holding ``packets`` instead (its granule unchanged)."""
        return self.with_(lacing=b"".join(lacing_for(p) for p in packets), body=b"".join(packets))


def lacing_for(packet: bytes) -> bytes:
    """The lacing values of one whole packet."""
    return bytes([255] * (len(packet) // 255) + [len(packet) % 255])


def split_pages(data: bytes) -> list[Page]:
    pages, pos = [], 0
    while pos < len(data):
        _, _, flags, granule, serial, sequence, _, segments = _HEADER.unpack_from(data, pos)
        lacing = data[pos + 27 : pos + 27 + segments]
        start = pos + 27 + segments
        end = start + sum(lacing)
        pages.append(Page(flags, granule, serial, sequence, lacing, data[start:end]))
        pos = end
    return pages


def page_bytes(page: Page) -> bytes:
    header = _HEADER.pack(
        b"OggS", 0, page.flags, page.granule, page.serial, page.sequence, 0, len(page.lacing)
    )
    raw = bytearray(header + page.lacing + page.body)
    crc = ogg_crc(bytes(raw)) if page.crc is None else page.crc
    struct.pack_into("<I", raw, 22, crc)
    return bytes(raw)


def join_pages(pages: list[Page]) -> bytes:
    return b"".join(page_bytes(page) for page in pages)
