"""Ogg Opus answers checked by their structure, not decoded whole: the length counted from the
packets' TOC bytes and the granule positions is the length decoding gives, and every lie about
length, size, order, checksum or layout is refused before the bytes are passed on."""

from __future__ import annotations

import io
import random
import time
import zlib
from typing import Any

import av
import pytest

from bot.audio import AudioFormat, Pcm, decode, encode_ogg_opus, probe
from bot.audio import ogg_opus as ogg_module
from bot.audio.ogg_opus import MAX_PAGES, is_ogg_opus, ogg_crc_matches, packet_samples
from bot.errors import AudioDeadlineError, AudioError
from tests.hostile import ogg_crc, opus_bomb
from tests.opus_files import Page, join_pages, lacing_for, real_opus, split_pages
from tests.signals import tone

OGG = AudioFormat.OGG
#: Three seconds in six pages: OpusHead, OpusTags, three full pages of audio, the last one.
CLIP = real_opus(3.01)
PAGES = split_pages(CLIP)


def checked(data: bytes) -> float:
    """The length an Ogg Opus answer is accepted with, checked as the client checks it."""
    return probe(data, OGG, keep_samples=False).duration


def forged(*changes: tuple[int, Page]) -> bytes:
    pages = list(PAGES)
    for index, page in changes:
        pages[index] = page
    return join_pages(pages)


# --- the count is the decoded length --------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.001, 0.37, 3.01])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("frame_ms", "application"),
    [(2.5, "lowdelay"), (5, "audio"), (10, "voip"), (20, "audio"), (20, "voip"), (40, "audio"),
     (60, "voip"), (120, "audio")],
)  # fmt: skip
def test_the_counted_length_is_the_decoded_length(
    seconds: float, channels: int, frame_ms: float, application: str
) -> None:
    data = real_opus(seconds, frame_ms=frame_ms, channels=channels, application=application)
    decoded = decode(data, OGG)
    counted = probe(data, OGG, keep_samples=False)
    assert abs(counted.duration - decoded.duration) <= frame_ms / 1000
    assert counted.duration == decoded.duration  # in fact to the sample
    assert (counted.sample_rate, counted.channels) == (decoded.sample_rate, decoded.channels)
    assert counted.decoded is None  # nothing was gathered


@pytest.mark.parametrize("seconds", [0.013, 1.0, 20.0, 20.013])
def test_the_bots_own_ogg_opus_is_counted_to_the_sample(seconds: float) -> None:
    data = encode_ogg_opus(tone(seconds))
    assert checked(data) == seconds
    assert probe(data, OGG, keep_samples=False) == probe(data, OGG)


def test_packets_are_counted_from_their_toc_bytes() -> None:
    celt_20ms, silk_60ms, hybrid_10ms = 0xF8, 0x18, 0x60  # configs 31, 3, 12; code 0
    assert packet_samples(bytes([celt_20ms, 1, 2])) == 960
    assert packet_samples(bytes([silk_60ms])) == 2880
    assert packet_samples(bytes([hybrid_10ms | 1, 1, 2])) == 960  # code 1: two equal frames
    assert packet_samples(bytes([celt_20ms | 2, 1, 7, 3])) == 1920  # code 2: two frames
    assert packet_samples(bytes([0xE3, 0x05]) + bytes(5)) == 5 * 120  # code 3: 5 × 2.5 ms


@pytest.mark.parametrize(
    "packet",
    [
        b"",  # [R1] no TOC byte
        bytes([0xF8]) + bytes(1276),  # [R2] a frame over 1,275 bytes
        bytes([0xF9, 1, 2, 3]),  # [R3] two equal frames from an odd length
        bytes([0xFA, 9, 1]),  # [R4] the first frame runs past the end
        bytes([0xFB]),  # [R6] no frame count
        bytes([0xFB, 0x00]),  # [R5] zero frames
        bytes([0x1B, 0x03]),  # [R5] 3 × 60 ms, over 120 ms
        bytes([0xFB, 0x03, 1, 2, 3, 4]),  # [R6] 4 bytes in 3 equal frames
        bytes([0xFB, 0x42, 200, 1, 2]),  # [R6] padding past the end
        bytes([0xFB, 0x82, 9, 1]),  # [R7] VBR lengths past the end
    ],
)
def test_malformed_packets_are_refused(packet: bytes) -> None:
    with pytest.raises(AudioError, match="Opus"):
        packet_samples(packet)
    audio = PAGES[2].packets
    with pytest.raises(AudioError, match="Opus"):
        checked(forged((2, PAGES[2].with_packets([*audio[:10], packet, *audio[11:]]))))


# --- checksums -------------------------------------------------------------------------------


def test_page_checksums_are_oggs_crc_not_zlibs() -> None:
    rng = random.Random(5)
    for page in [*PAGES, Page(0, 7, 1, 2, b"\x03", bytes(rng.randrange(256) for _ in range(3)))]:
        data = join_pages([page])
        assert ogg_crc_matches(data, 0, len(data))
        stored = int.from_bytes(data[22:26], "little")
        assert stored == ogg_crc(data[:22] + bytes(4) + data[26:])
        assert stored != zlib.crc32(data[:22] + bytes(4) + data[26:])
        for bit in (0, 77, 8 * len(data) - 1):
            damaged = bytearray(data)
            damaged[bit // 8] ^= 1 << bit % 8
            if bit // 8 not in range(22, 26):
                assert not ogg_crc_matches(bytes(damaged), 0, len(data))


@pytest.mark.parametrize("index", range(len(PAGES)))
@pytest.mark.parametrize("where", ["granule", "last byte"])
def test_a_page_damaged_in_transit_is_refused(index: int, where: str) -> None:
    start = len(join_pages(PAGES[:index]))
    end = start + len(join_pages([PAGES[index]]))
    damaged = bytearray(CLIP)
    damaged[start + 6 if where == "granule" else end - 1] ^= 0x10
    with pytest.raises(AudioError, match="checksum"):
        checked(bytes(damaged))


# --- lies about length -----------------------------------------------------------------------


def test_a_granule_that_claims_hours_is_refused_from_the_claim() -> None:
    hours = PAGES[-1].with_(granule=3 * 3600 * 48_000)
    started = time.perf_counter()
    with pytest.raises(AudioError, match="claims 10,800 s, over the decoding budget"):
        checked(forged((-1, hours)))
    assert time.perf_counter() - started < 1.0  # generous: a few pages at most were read


#: Samples in every audio packet of CLIP: its last page holds one 20 ms packet.
TOTAL = PAGES[-2].granule + 960


@pytest.mark.parametrize("granule", [TOTAL + 1, TOTAL + 48_000, TOTAL - 961, TOTAL - 48_000])
def test_a_last_granule_that_disagrees_with_the_packets_is_refused(granule: int) -> None:
    # More than the packets hold, or less by more than the final packet may be trimmed.
    assert PAGES[-1].packets == [PAGES[-1].body]
    assert packet_samples(PAGES[-1].body) == 960
    with pytest.raises(AudioError, match="claims"):
        checked(forged((-1, PAGES[-1].with_(granule=granule))))


def test_end_trimming_within_the_final_packet_is_honoured() -> None:
    last = PAGES[-1]
    assert checked(forged((-1, last.with_(granule=last.granule - 100)))) == pytest.approx(
        3.01 - 100 / 48_000
    )


def test_granules_that_go_backwards_are_refused() -> None:
    with pytest.raises(AudioError, match="claims"):
        checked(forged((3, PAGES[3].with_(granule=PAGES[2].granule - 1))))


def test_a_header_page_with_a_granule_is_refused() -> None:
    with pytest.raises(AudioError, match="granule"):
        checked(forged((1, PAGES[1].with_(granule=960))))


def test_the_eight_channel_bombs_are_still_decoded_and_refused() -> None:
    # Many channels are not counted but decoded, folded to mono, as before.
    for claim, reason in ((None, "budget"), (1.0, "MiB")):
        with pytest.raises(AudioError, match=reason):
            checked(opus_bomb(1745.0, channels=8, claim_seconds=claim))
    small = opus_bomb(2.0, channels=8)
    assert checked(small) == decode(small, OGG).duration


def test_a_mono_bomb_is_refused_from_its_count_without_decoding() -> None:
    started = time.perf_counter()
    with pytest.raises(AudioError, match="claims 1,745 s, over the decoding budget"):
        checked(opus_bomb(1745.0, channels=1))
    with pytest.raises(AudioError, match="decodes to over 72 MiB"):
        checked(opus_bomb(1745.0, channels=1, claim_seconds=1.0))
    assert time.perf_counter() - started < 1.0  # decoding the liar took ~2 s
    assert checked(opus_bomb(655.0, channels=1)) == pytest.approx(655.0, abs=0.1)


# --- lies about size and order ---------------------------------------------------------------


def test_a_page_that_claims_more_bytes_than_there_are_is_refused() -> None:
    with pytest.raises(AudioError, match="past the end"):
        checked(CLIP[:-10])
    swollen = PAGES[3].with_(lacing=PAGES[3].lacing[:-1] + bytes([PAGES[3].lacing[-1] + 3]))
    with pytest.raises(AudioError):
        checked(forged((3, swollen)))  # it swallows the next page's first bytes


@pytest.mark.parametrize("cut", [1, 20, 28])
def test_data_cut_short_is_refused(cut: int) -> None:
    last_start = len(CLIP) - len(join_pages([PAGES[-1]]))
    with pytest.raises(AudioError):
        checked(CLIP[: last_start + cut])


def test_missing_or_reordered_pages_are_refused() -> None:
    with pytest.raises(AudioError, match="missing"):
        checked(join_pages([*PAGES[:3], *PAGES[4:]]))
    with pytest.raises(AudioError, match="missing"):
        checked(join_pages([*PAGES[:2], PAGES[3], PAGES[2], *PAGES[4:]]))


def test_bytes_after_the_last_page_are_refused() -> None:
    with pytest.raises(AudioError, match="after its last page"):
        checked(CLIP + b"OggS" + bytes(40))


def test_too_many_pages_are_refused() -> None:
    serial = PAGES[0].serial
    flood = [Page(0, -1, serial, 2 + n, b"", b"") for n in range(MAX_PAGES)]
    tail = [page.with_(sequence=page.sequence + MAX_PAGES) for page in PAGES[2:]]
    with pytest.raises(AudioError, match="pages"):
        checked(join_pages([*PAGES[:2], *flood, *tail]))
    # Far more than a real answer has: one 20 ms packet a page covers the decoding budget.
    assert MAX_PAGES * 0.020 > 786


def test_a_packet_continued_on_the_next_page_is_counted() -> None:
    long = bytes([0xFB, 0x03]) + bytes(3 * 200)  # code 3: 3 × 20 ms CELT, 200 bytes each
    assert packet_samples(long) == 2880
    serial, extra = PAGES[2].serial, 2880
    opening = Page(0, -1, serial, 2, bytes([255]), long[:255])
    closing = PAGES[2].with_(
        flags=0x01,
        sequence=3,
        lacing=lacing_for(long[255:]) + PAGES[2].lacing,
        body=long[255:] + PAGES[2].body,
        granule=PAGES[2].granule + extra,
    )
    later = [p.with_(sequence=p.sequence + 1, granule=p.granule + extra) for p in PAGES[3:]]
    assert checked(join_pages([*PAGES[:2], opening, closing, *later])) == pytest.approx(3.07)
    unmarked = closing.with_(flags=0)
    with pytest.raises(AudioError, match="continue"):
        checked(join_pages([*PAGES[:2], opening, unmarked, *later]))
    with pytest.raises(AudioError, match="inside a packet"):
        checked(join_pages([*PAGES[:2], opening.with_(flags=0x04)]))


# --- lies about layout -----------------------------------------------------------------------


def test_a_second_stream_is_refused() -> None:
    other = PAGES[2].with_(serial=PAGES[2].serial + 1)
    with pytest.raises(AudioError, match="more than one stream"):
        checked(forged((2, other)))
    chained = CLIP + real_opus(0.5)  # a second stream after the first ends
    with pytest.raises(AudioError, match="after its last page"):
        checked(chained)


def test_headers_that_are_not_opus_are_refused() -> None:
    head = PAGES[0].body
    tags = PAGES[1].body
    cases = {
        "version": head[:8] + bytes([16]) + head[9:],
        "no channels": head[:9] + bytes([0]) + head[10:],
        "wrong length": head + b"\0",
    }
    for name, body in cases.items():
        with pytest.raises(AudioError, match="OpusHead"):
            checked(forged((0, PAGES[0].with_packets([body]))))
        del name
    not_tags = b"\x03vorbis" + tags[8:]
    vendor_lies = tags[:8] + (10_000).to_bytes(4, "little") + tags[12:]
    count_lies = tags[:8] + bytes(4) + (1_000_000).to_bytes(4, "little")
    for body in (not_tags, vendor_lies, count_lies):
        with pytest.raises(AudioError, match="OpusTags"):
            checked(forged((1, PAGES[1].with_packets([body]))))
    with pytest.raises(AudioError, match="OpusTags"):
        checked(forged((1, PAGES[1].with_packets([tags, PAGES[2].packets[0]]))))


def test_ogg_that_is_not_opus_is_decoded_as_before() -> None:
    vorbis = encode_vorbis(tone(0.5, sample_rate=48_000, channels=2))
    assert vorbis[28:35] == b"\x01vorbis"
    assert not is_ogg_opus(vorbis)
    assert checked(vorbis) == probe(vorbis, OGG).duration == pytest.approx(0.5, abs=0.025)


def encode_vorbis(pcm: Pcm) -> bytes:
    """Ogg Vorbis from FFmpeg's own encoder (experimental, stereo only)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("vorbis", rate=pcm.sample_rate)
        stream.layout = "stereo"
        stream.codec_context.options = {"strict": "experimental"}
        container.start_encoding()
        context = stream.codec_context
        chunker = av.AudioResampler(context.format, "stereo", pcm.sample_rate, context.frame_size)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=pcm.frame_count)
        frame.planes[0].update(pcm.data)
        frame.sample_rate = pcm.sample_rate
        for out in [*chunker.resample(frame), *chunker.resample(None)]:
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# --- what is still decoded, and the deadline -------------------------------------------------


class RecordingDecoder:
    """The real decoder, noting each packet it is given."""

    def __init__(self, codec: av.AudioCodecContext) -> None:
        self.codec = codec
        self.packets: list[bytes] = []

    def decode(self, packet: av.Packet[Any]) -> list[av.AudioFrame]:
        self.packets.append(bytes(packet))
        return self.codec.decode(packet)


def test_the_first_packets_are_decoded_and_a_decoder_refusal_is_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ogg_module._decoder
    recorders: list[RecordingDecoder] = []

    def recording(head: ogg_module.OpusHead) -> RecordingDecoder:
        recorders.append(RecordingDecoder(real(head)))
        return recorders[-1]

    monkeypatch.setattr(ogg_module, "_decoder", recording)
    assert checked(CLIP) == pytest.approx(3.01)
    assert [r.packets for r in recorders] == [PAGES[2].packets[:3]]

    # A decoder that cannot read the packets (MP3's, here) refuses the stream.
    monkeypatch.setattr(ogg_module, "_decoder", lambda head: av.CodecContext.create("mp3", "r"))
    with pytest.raises(AudioError, match="undecodable"):
        checked(CLIP)


def test_checking_stops_at_the_deadline() -> None:
    with pytest.raises(AudioDeadlineError):
        probe(CLIP, OGG, keep_samples=False, deadline=time.monotonic() - 1)
