"""Hostile answers an upstream could send, built byte by byte so tests and benches need no files.

`opus_bomb` is the decompression bomb of issue 11: a few hundred kilobytes of Ogg Opus whose
multichannel packets carry no payload at all, so each decodes to 60 ms of eight-channel
silence (the decoder's concealment): about 1.3 GB of PCM for a 220 KB file.
"""

from __future__ import annotations

import struct

__all__ = ["nested_json", "ogg_crc", "opus_bomb"]

_OGG_POLY = 0x04C11DB7


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ _OGG_POLY) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, no reflection, no final xor)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _page(packets: list[bytes], granule: int, sequence: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing.extend([255] * (len(packet) // 255))
        lacing.append(len(packet) % 255)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x0B0B, sequence, 0, len(lacing))
    page = bytearray(header + bytes(lacing) + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


def opus_bomb(
    seconds: float = 1745.0, channels: int = 8, *, claim_seconds: float | None = None
) -> bytes:
    """Ogg Opus of ``channels`` channels and ``seconds`` of output, in 60 ms empty packets.

    ``claim_seconds`` makes every page's granule position lie: the container then claims that
    length, so only a running count of what decodes can stop it.

    Channel mapping family 1 (Vorbis order) with one stream per channel pair and mono streams
    for the rest; every stream's frame is a SILK 60 ms TOC byte with no data (self-delimited
    for all but the last stream), which decoders conceal as silence.
    """
    coupled = channels // 2
    streams = channels - coupled
    mapping = bytes(range(channels))
    head = (
        b"OpusHead"
        + struct.pack("<BBHIhB", 1, channels, 312, 48_000, 0, 1 if channels > 2 else 0)
        + (struct.pack("<BB", streams, coupled) + mapping if channels > 2 else b"")
    )
    tags = b"OpusTags" + struct.pack("<I", 5) + b"bombs" + struct.pack("<I", 0)
    toc = 0x18  # config 3: SILK narrowband, 60 ms; mono; one frame
    packet = bytes([toc, 0]) * (streams - 1) + bytes([toc])
    count = round(seconds / 0.060)
    pages = [_page([head], 0, 0, 0x02), _page([tags], 0, 1, 0)]
    sequence, done = 2, 0
    while done < count:
        batch = min(255, count - done)
        done += batch
        flags = 0x04 if done == count else 0
        granule = done * 2880 if claim_seconds is None else round(claim_seconds * 48_000)
        pages.append(_page([packet] * batch, granule, sequence, flags))
        sequence += 1
    return b"".join(pages)


def nested_json(depth: int = 60_000) -> bytes:
    """``[[[[…]]]]``: valid JSON that blows Python's parser's recursion limit."""
    return b"[" * depth + b"]" * depth
