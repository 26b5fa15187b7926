"""RTP as Discord voice carries it: transport decryption (rtpsize AEAD modes) and Opus decoding.

The rtpsize modes authenticate the RTP header (and the 4-byte extension header, when present)
as additional data, encrypt the rest, and append the 4-byte big-endian nonce counter to the
packet; the cipher's nonce is that counter padded with zeros. This mirrors discord.py's
`_encrypt_aead_xchacha20_poly1305_rtpsize` from the receiving side.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import av
import nacl.bindings
import nacl.exceptions

XCHACHA = "aead_xchacha20_poly1305_rtpsize"
AES_GCM = "aead_aes256_gcm_rtpsize"
SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = 960  # 20 ms at 48 kHz.
OPUS_SILENCE = b"\xf8\xff\xfe"
RTP_PAYLOAD_TYPE = 0x78


class RtpError(ValueError):
    """A packet Discord's voice server would drop: malformed, or failing authentication."""


@dataclass(frozen=True)
class RtpPacket:
    sequence: int
    timestamp: int
    ssrc: int
    nonce: int
    opus: bytes


def modes_available() -> list[str]:
    """The modes Discord offers today, in its order, minus those this machine cannot decrypt."""
    aes = getattr(nacl.bindings, "crypto_aead_aes256gcm_is_available", lambda: False)()
    return [AES_GCM, XCHACHA] if aes else [XCHACHA]


def decrypt(mode: str, key: bytes, packet: bytes) -> RtpPacket:
    if len(packet) < 12 + 16 + 4 or packet[0] >> 6 != 2:
        raise RtpError("not an RTP packet")
    if packet[1] & 0x7F != RTP_PAYLOAD_TYPE:
        raise RtpError(f"payload type {packet[1] & 0x7F}, not Opus (0x78)")
    csrc_count = packet[0] & 0x0F
    extended = bool(packet[0] & 0x10)
    header_len = 12 + 4 * csrc_count
    aad_len = header_len + (4 if extended else 0)
    sequence, timestamp, ssrc = struct.unpack_from(">HII", packet, 2)
    aad = packet[:aad_len]
    nonce_counter = packet[-4:]
    ciphertext = packet[aad_len:-4]
    try:
        if mode == XCHACHA:
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, aad, nonce_counter + bytes(20), key
            )
        elif mode == AES_GCM:
            plain = nacl.bindings.crypto_aead_aes256gcm_decrypt(  # type: ignore[attr-defined]
                ciphertext, aad, nonce_counter + bytes(8), key
            )
        else:
            raise RtpError(f"unsupported mode {mode}")
    except nacl.exceptions.CryptoError:
        raise RtpError("authentication failed (wrong key, nonce or AAD)") from None
    if extended:
        (words,) = struct.unpack_from(">H", packet, header_len + 2)
        plain = plain[4 * words :]
    return RtpPacket(sequence, timestamp, ssrc, struct.unpack(">I", nonce_counter)[0], plain)


@dataclass
class ReceivedAudio:
    """Everything heard from the bot in one guild, across voice connections."""

    packets: int = 0
    silence_packets: int = 0
    samples: int = 0
    pcm: bytearray = field(default_factory=bytearray)  # float32 mono (left channel), 48 kHz
    problems: list[str] = field(default_factory=list)
    ssrcs: list[int] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds of decoded speech, silence frames excluded."""
        return self.samples / SAMPLE_RATE


class OpusStream:
    """One SSRC's packets: checks RTP continuity, decodes Opus with PyAV into the `audio`
    each packet is counted in (heard, or sent while suppressed on a Stage)."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.decoder = av.CodecContext.create("opus", "r")
        self.last: RtpPacket | None = None

    def feed(self, packet: RtpPacket, audio: ReceivedAudio) -> None:
        if self.ssrc not in audio.ssrcs:
            audio.ssrcs.append(self.ssrc)
        last = self.last
        if last is not None:
            if packet.sequence != (last.sequence + 1) & 0xFFFF:
                audio.problems.append(f"sequence {last.sequence} -> {packet.sequence}")
            if packet.timestamp != (last.timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF:
                audio.problems.append(f"timestamp {last.timestamp} -> {packet.timestamp}")
            if packet.nonce <= last.nonce:
                audio.problems.append(f"nonce reused or going back: {packet.nonce}")
        self.last = packet
        if packet.opus == OPUS_SILENCE:
            audio.silence_packets += 1
            return
        audio.packets += 1
        try:
            frames = self.decoder.decode(av.Packet(packet.opus))
        except av.error.FFmpegError as exc:
            audio.problems.append(f"undecodable Opus in packet {packet.sequence}: {exc}")
            return
        for frame in frames:
            if frame.samples != SAMPLES_PER_FRAME:
                audio.problems.append(f"packet {packet.sequence} holds {frame.samples} samples")
            audio.samples += frame.samples
            audio.pcm += bytes(frame.planes[0])[: 4 * frame.samples]
