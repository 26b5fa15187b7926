"""Checking Ogg Opus by its structure instead of decoding it whole.

An Ogg Opus answer is kept, posted and played as it is, so decoding all of it only to check it
and measure it was most of the bot's own cost on that path (about 20 ms per 20 s clip). Its
length is written twice: in every packet's TOC byte (RFC 6716 §3.1: the configuration gives the
frame duration, the code the frame count) and in the pages' granule positions (RFC 7845 §4).
Both are counted here and must agree, and every page must be where its predecessor says, in
sequence, with its checksum right; so a file that lies about its length, its size or its layout
is refused before anyone plays it, and a bomb is refused from its count, never decoded. The
first few packets are still decoded, to prove the stream really is Opus.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

import av
import av.error

from bot.audio.pcm import MAX_DECODED_BYTES, SAMPLE_BYTES, layout
from bot.errors import AudioDeadlineError, AudioError

__all__ = ["MAX_PAGES", "OPUS_RATE", "OpusHead", "count_ogg_opus", "is_ogg_opus", "opus_head"]

#: Opus always decodes at 48 kHz; granule positions count samples at that rate.
OPUS_RATE = 48_000
#: The decoding path's budget in samples: mono s16 at 48 kHz, as it folds and counts them.
_MAX_SAMPLES = MAX_DECODED_BYTES // SAMPLE_BYTES
#: Pages looked at before the data is refused: one 20 ms packet a page for the whole budget
#: (786 s, about 39,000 pages) fits, a flood of empty pages does not.
MAX_PAGES = 1 << 16
#: Audio packets decoded to prove the stream decodes; the rest are only counted.
_DECODED_PACKETS = 3

_PAGE = struct.Struct(
    "<4sBBqIIIB"
)  # capture, version, flags, granule, serial, sequence, crc, segments
_HEAD = struct.Struct("<8sBBHIhB")  # OpusHead up to the mapping family (RFC 7845 §5.1)
_U32 = struct.Struct("<I")
_CONTINUED, _FIRST, _LAST = 0x01, 0x02, 0x04
_LARGEST_PAGE = _PAGE.size + 255 + 255 * 255
#: Most samples one packet may hold (120 ms, RFC 6716 §3.2.5 [R5]).
_MAX_PACKET_SAMPLES = 5_760
#: Samples per frame for each TOC configuration (RFC 6716 §3.1, table 2): SILK 10/20/40/60 ms,
#: hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
_FRAME_SAMPLES = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4

# zlib's CRC-32 runs the same polynomial bit-reversed (least significant bit first). Ogg's
# runs it most significant bit first: with every byte's bits reversed in, and the register's
# reversed out, zlib's C code computes Ogg's checksum at memory speed (a table loop in Python
# costs ~10 ms for a 20 s clip).
_REVERSED = bytes(int(f"{n:08b}"[::-1], 2) for n in range(256))
_NO_CRC = bytes(4)


def is_ogg_opus(data: bytes) -> bool:
    """Ogg whose first packet is an OpusHead: playable and postable without transcoding."""
    return data[:4] == b"OggS" and data[28:36] == b"OpusHead"


def ogg_crc_matches(data: bytes, start: int, end: int) -> bool:
    """Whether the page in ``data[start:end]`` carries its own checksum (CRC-32, polynomial
    0x04C11DB7, no reflection, zero start, computed with the checksum field zeroed)."""
    page = memoryview(data[start:end].translate(_REVERSED))
    crc = zlib.crc32(page[:22], 0xFFFFFFFF)  # zlib inverts in and out: a register of zero
    crc = zlib.crc32(_NO_CRC, crc)
    crc = zlib.crc32(page[26:], crc) ^ 0xFFFFFFFF
    # The register, bit-reversed, stored little-endian: each byte reversed, order swapped.
    return crc.to_bytes(4, "big").translate(_REVERSED) == data[start + 22 : start + 26]


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header's fields the check relies on (RFC 7845 §5.1)."""

    version: int
    channels: int
    pre_skip: int
    family: int
    packet: bytes

    @property
    def counted(self) -> bool:
        """One mono or stereo stream (family 0): what Gemini and the bot's encoder make, and
        what the packets can be counted for. Other layouts are decoded, as they always were."""
        return self.family == 0 and self.channels in (1, 2)


def opus_head(data: bytes) -> OpusHead:
    """The first page's OpusHead, which must be alone on a page with its checksum right;
    raise AudioError if it is not."""
    if len(data) < _PAGE.size or data[:4] != b"OggS":
        raise AudioError("not Ogg data")
    segments = data[26]
    body = _PAGE.size + segments
    lacing = data[_PAGE.size : body]
    if not lacing or lacing[-1] == 255 or any(value != 255 for value in lacing[:-1]):
        raise AudioError("the first Ogg page does not hold the OpusHead alone")
    end = body + sum(lacing)
    if end > len(data) or not ogg_crc_matches(data, 0, end):
        raise AudioError("Ogg page 0 fails its checksum")  # its fields decide what follows
    packet = data[body:end]
    if len(packet) < _HEAD.size or packet[:8] != b"OpusHead":
        raise AudioError("Ogg data without an OpusHead")
    _, version, channels, pre_skip, _, _, family = _HEAD.unpack_from(packet)
    if version > 15:  # the major version is the top four bits: 0 is the one there is
        raise AudioError(f"OpusHead version {version} is not one this bot reads")
    if channels == 0:
        raise AudioError("OpusHead declares no channels")
    if family == 0 and len(packet) != _HEAD.size:
        raise AudioError("an OpusHead of the wrong length")
    return OpusHead(version, channels, pre_skip, family, bytes(packet))


def count_ogg_opus(data: bytes, deadline: float | None = None) -> int | None:
    """Samples at 48 kHz an Ogg Opus file plays (pre-skip and end trimming removed), checked
    without decoding it whole; None for layouts other than one mono or stereo stream, which
    the caller decodes instead. Raises AudioError for anything malformed or over the budget,
    AudioDeadlineError past ``deadline`` (a `time.monotonic` value)."""
    head = opus_head(data)
    if not head.counted:
        return None
    claimed = _last_granule(data)
    if claimed is not None:
        _check_claim(claimed - head.pre_skip)
    walk = _Walk(data, head, deadline)
    walk.run()
    samples = walk.played()
    _decodes(head, walk.probes)
    return samples


def _check_claim(samples: int) -> None:
    if samples > _MAX_SAMPLES:
        raise AudioError(f"OGG data claims {samples / OPUS_RATE:,.0f} s, over the decoding budget")


def _last_granule(data: bytes) -> int | None:
    """The final page's granule position, if the final page can be found and verified from the
    end (as FFmpeg reads a length): a bomb honest about its length is refused without walking
    it. None if not found; the walk then finds whatever is wrong."""
    size = len(data)
    found = data.rfind(b"OggS", max(0, size - _LARGEST_PAGE))
    for _ in range(8):  # a page's payload may hold the pattern too, but rarely many times
        if found < 0 or found + _PAGE.size > size:
            return None
        body = found + _PAGE.size + data[found + 26]
        if body <= size and body + sum(data[found + _PAGE.size : body]) == size:
            if not ogg_crc_matches(data, found, size):
                return None
            granule: int = _PAGE.unpack_from(data, found)[3]
            return granule
        found = data.rfind(b"OggS", max(0, size - _LARGEST_PAGE), found)
    return None


def packet_samples(packet: bytes | memoryview) -> int:
    """Samples (per channel, 48 kHz) in one Opus packet, from its TOC byte and frame count;
    raise AudioError for a packet RFC 6716 §3.4 calls malformed (rules R1 to R7)."""
    size = len(packet)
    if not size:
        raise AudioError("an empty Opus packet")  # [R1]
    toc = packet[0]
    frame = _FRAME_SAMPLES[toc >> 3]
    code = toc & 3
    if code == 0:
        if size > 1276:  # [R2]: a frame holds at most 1,275 bytes
            raise AudioError("an Opus frame over 1,275 bytes")
        return frame
    if code == 1:
        if (size - 1) & 1 or size > 2551:  # [R3]
            raise AudioError("an Opus packet of two equal frames with an odd length")
        return 2 * frame
    if code == 2:
        first, used = _frame_length(packet, 1)
        if 1 + used + first > size or size - 1 - used - first > 1275:  # [R4]
            raise AudioError("an Opus packet whose first frame runs past its end")
        return 2 * frame
    return frame * _code3_frames(packet, frame)


def _code3_frames(packet: bytes | memoryview, frame: int) -> int:
    """Frames in a code 3 packet (RFC 6716 §3.2.5), checking its padding and lengths."""
    size = len(packet)
    if size < 2:
        raise AudioError("an Opus packet without its frame count")  # [R6]
    count_byte = packet[1]
    frames = count_byte & 0x3F
    if not frames or frames * frame > _MAX_PACKET_SAMPLES:  # [R5]
        raise AudioError(f"an Opus packet of {frames} frames of {frame} samples")
    pos, padding = 2, 0
    if count_byte & 0x40:
        while True:
            if pos >= size:
                raise AudioError("an Opus packet whose padding runs past its end")
            value = packet[pos]
            pos += 1
            padding += 254 if value == 255 else value
            if value != 255:
                break
    if count_byte & 0x80:  # variable bitrate: every frame's length but the last
        lengths = 0
        for _ in range(frames - 1):
            length, used = _frame_length(packet, pos)
            pos += used
            lengths += length
        last = size - pos - padding - lengths
        if not 0 <= last <= 1275:  # [R7]
            raise AudioError("an Opus packet whose frames do not fit its length")
        return frames
    payload = size - pos - padding
    if payload < 0 or payload % frames or payload // frames > 1275:  # [R6]
        raise AudioError("an Opus packet of equal frames that do not fit its length")
    return frames


def _frame_length(packet: bytes | memoryview, pos: int) -> tuple[int, int]:
    """A frame length (RFC 6716 §3.2.1) at ``pos``: (length, bytes it took)."""
    if pos >= len(packet):
        raise AudioError("an Opus packet cut inside a frame length")
    first = packet[pos]
    if first < 252:
        return first, 1
    if pos + 1 >= len(packet):
        raise AudioError("an Opus packet cut inside a frame length")
    return first + 4 * packet[pos + 1], 2


def _check_tags(packet: bytes | memoryview) -> None:
    """OpusTags (RFC 7845 §5.2): its vendor string and comments must lie inside it."""
    size = len(packet)
    if size < 16 or bytes(packet[:8]) != b"OpusTags":
        raise AudioError("Ogg Opus data without its OpusTags header")
    pos = 12 + _U32.unpack_from(packet, 8)[0]
    if pos + 4 > size:
        raise AudioError("an OpusTags header whose vendor string runs past its end")
    count = _U32.unpack_from(packet, pos)[0]
    pos += 4
    if count > (size - pos) // 4:
        raise AudioError(f"an OpusTags header claiming {count:,} comments")
    for _ in range(count):
        if pos + 4 > size:
            raise AudioError("an OpusTags comment runs past the header's end")
        pos += 4 + _U32.unpack_from(packet, pos)[0]
    if pos > size:
        raise AudioError("an OpusTags comment runs past the header's end")


class _Walk:
    """One pass over the pages: structure, checksums, packets counted, granules followed."""

    def __init__(self, data: bytes, head: OpusHead, deadline: float | None) -> None:
        self.data = data
        self.view = memoryview(data)
        self.head = head
        self.deadline = deadline
        self.pending: list[memoryview] = []  # a packet continued on the next page
        self.packets = 0  # completed: the OpusHead, the OpusTags, then audio
        self.total = 0  # samples in every audio packet so far, pre-skip included
        self.last = 0  # samples in the last audio packet
        self.granule = 0  # the latest page's that completes a packet
        self.ended = False
        self.probes: list[tuple[bytes, int]] = []

    def run(self) -> None:
        data, size = self.data, len(self.data)
        pos = sequence = 0
        serial: int | None = None
        while pos < size:
            if self.ended:
                raise AudioError("Ogg data goes on after its last page")
            if sequence >= MAX_PAGES:
                raise AudioError(f"Ogg data of over {MAX_PAGES:,} pages")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise AudioDeadlineError("checking OGG data ran past the deadline")
            if pos + _PAGE.size > size:
                raise AudioError(f"Ogg data cut inside the header of page {sequence}")
            capture, version, flags, granule, page_serial, number, _, segments = _PAGE.unpack_from(
                data, pos
            )
            if capture != b"OggS" or version or flags & ~(_CONTINUED | _FIRST | _LAST):
                raise AudioError(f"no Ogg page where page {sequence} should start")
            body = pos + _PAGE.size + segments
            lacing = data[pos + _PAGE.size : body]
            end = body + sum(lacing)
            if end > size:
                raise AudioError(f"Ogg page {sequence} claims {end - pos:,} bytes, past the end")
            if not ogg_crc_matches(data, pos, end):
                raise AudioError(f"Ogg page {sequence} fails its checksum")
            if number != sequence:
                raise AudioError(f"Ogg page {sequence} is numbered {number}: pages are missing")
            if serial is None:
                if not flags & _FIRST:
                    raise AudioError("the first Ogg page is not marked as a stream's start")
                serial = page_serial
            elif page_serial != serial or flags & _FIRST:
                raise AudioError("Ogg data holding more than one stream")
            if bool(flags & _CONTINUED) != bool(self.pending):
                raise AudioError(f"Ogg page {sequence} does not continue the page before it")
            self.ended = bool(flags & _LAST)
            self._page(sequence, granule, body, lacing)
            pos, sequence = end, sequence + 1
        if self.pending:
            raise AudioError("Ogg data cut inside a packet")
        if self.packets < 2:
            raise AudioError("Ogg Opus data without its OpusTags header")

    def _page(self, sequence: int, granule: int, body: int, lacing: bytes) -> None:
        before = self.packets
        start = offset = body
        for value in lacing:
            offset += value
            if value == 255:
                continue
            if self.pending:
                self.pending.append(self.view[start:offset])
                packet: bytes | memoryview = b"".join(self.pending)
                self.pending = []
            else:
                packet = self.view[start:offset]
            start = offset
            if self.packets >= 2:
                self.last = packet_samples(packet)
                self.total += self.last
                if len(self.probes) < _DECODED_PACKETS:
                    self.probes.append((bytes(packet), self.last))
            elif self.packets == 1:
                _check_tags(packet)
            self.packets += 1
        if start < offset:
            self.pending.append(self.view[start:offset])
        self._granule(sequence, granule, before)

    def _granule(self, sequence: int, granule: int, before: int) -> None:
        """Granules follow the packets: header pages say 0, and each page that completes audio
        says how many samples have been decoded by then, never more than its packets hold,
        never less than the page before."""
        after = self.packets
        if sequence == 0 and after != 1:
            raise AudioError("the first Ogg page does not hold the OpusHead alone")
        if before < 2 and after > 2:
            raise AudioError("audio on the OpusTags page")  # RFC 7845 §3: tags end a page
        if after <= 2:
            if granule not in (0, -1) or (sequence == 0 and granule):
                raise AudioError("an Ogg Opus header page with a granule position")
            return
        if self.total - self.head.pre_skip > _MAX_SAMPLES:
            raise AudioError(f"OGG data decodes to over {MAX_DECODED_BYTES >> 20} MiB")
        if granule == -1:
            if after > before:
                raise AudioError(f"Ogg page {sequence} completes packets but has no granule")
            return
        _check_claim(granule - self.head.pre_skip)
        if granule < self.granule or granule > self.total:
            raise AudioError(
                f"Ogg page {sequence} claims {granule:,} samples where its packets hold "
                f"{self.total:,}"
            )
        self.granule = granule

    def played(self) -> int:
        """Samples the stream plays: the last granule less the pre-skip, which may trim no more
        than the final packet, and only on the last page (RFC 7845 §4.4)."""
        if self.packets == 2:
            raise AudioError("no audio samples in the OGG data")
        trimmed = self.total - self.granule
        if trimmed > (self.last if self.ended else 0):
            raise AudioError(
                f"OGG data claims {self.granule:,} samples where its packets hold {self.total:,}"
            )
        samples = self.granule - self.head.pre_skip
        if samples <= 0:
            raise AudioError("no audio samples in the OGG data")
        return samples


def _decoder(head: OpusHead) -> av.AudioCodecContext:
    """FFmpeg's own Opus decoder, the one its Ogg demuxer would pick for the rest."""
    codec = av.CodecContext.create("opus", "r")
    assert isinstance(codec, av.AudioCodecContext)
    codec.extradata = head.packet
    codec.sample_rate = OPUS_RATE
    codec.layout = layout(head.channels)
    return codec


def _decodes(head: OpusHead, packets: list[tuple[bytes, int]]) -> None:
    """Decode the first packets (with their counted samples): they must decode, and give
    samples unless the pre-skip drops them all."""
    try:
        codec = _decoder(head)
        decoded = sum(
            frame.samples for packet, _ in packets for frame in codec.decode(av.Packet(packet))
        )
    except (av.error.FFmpegError, ValueError) as exc:
        reason = (exc.strerror if isinstance(exc, av.error.FFmpegError) else None) or str(exc)
        raise AudioError(f"undecodable OGG data ({reason})") from None
    if not decoded and sum(samples for _, samples in packets) > head.pre_skip:
        raise AudioError("undecodable OGG data (its first packets give no samples)")
