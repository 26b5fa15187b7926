"""The little of MLS (RFC 9420) Discord's voice server speaks, TLS-serialised by hand.

DAVE's voice server is MLS's delivery service and its one external sender: it reads key
packages and commits (public messages), and writes Add and Remove proposals signed with its
own P-256 key. That needs the wire format of those few structures, SignWithLabel and
RefHash for ciphersuite 2 (MLS_128_DHKEMP256_AES128GCM_SHA256_P256), and nothing of the
group's secrets, which only members hold.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

MLS_10 = 1
CIPHERSUITE = 2
PUBLIC_MESSAGE, WELCOME, KEY_PACKAGE = 1, 3, 5
MEMBER, EXTERNAL = 1, 2
PROPOSAL, COMMIT = 2, 3
ADD, REMOVE = 1, 3
BASIC = 1
LIFETIME_MAX = 2**64 - 1


class MlsError(ValueError):
    """A message the voice server refuses: malformed, wrongly signed, or not DAVE's."""


# -- the TLS presentation language, MLS flavour (variable-length vector headers) ------------


def varint(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", n | 0x4000)
    if n < 1 << 30:
        return struct.pack(">I", n | 0x8000_0000)
    raise MlsError("vector too long")


def vec(data: bytes) -> bytes:
    return varint(len(data)) + data


class Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.at = offset

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise MlsError("truncated message")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def vec(self) -> bytes:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            n = first
        elif prefix == 1:
            n = ((first & 0x3F) << 8) | self.u8()
        elif prefix == 2:
            n = ((first & 0x3F) << 24) | int.from_bytes(self.take(3), "big")
        else:
            raise MlsError("invalid vector length")
        return self.take(n)


# -- signatures: ECDSA P-256 with SHA-256, DER encoded ----------------------------------------


def _sign_content(label: str, content: bytes) -> bytes:
    return vec(b"MLS 1.0 " + label.encode()) + vec(content)


class Signer:
    """The voice server's external-sender key."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.public = b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    def sign_with_label(self, label: str, content: bytes) -> bytes:
        return self.key.sign(_sign_content(label, content), ec.ECDSA(hashes.SHA256()))


def verify_with_label(public: bytes, label: str, content: bytes, signature: bytes) -> bool:
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
        key.verify(signature, _sign_content(label, content), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def ref_hash(label: str, value: bytes) -> bytes:
    return hashlib.sha256(vec(label.encode()) + vec(value)).digest()


def user_identity(user_id: int) -> bytes:
    """DAVE's basic credential: the user's snowflake, 64-bit big endian."""
    return struct.pack(">Q", user_id)


def external_sender(signer: Signer, identity: bytes) -> bytes:
    """ExternalSender { signature_key<V>; Credential { u16 basic; identity<V> } }."""
    return vec(signer.public) + struct.pack(">H", BASIC) + vec(identity)


# -- leaf nodes and key packages -------------------------------------------------------------


@dataclass(frozen=True)
class LeafNode:
    signature_key: bytes
    identity: bytes
    source: int
    not_before: int
    not_after: int
    tbs: bytes  # LeafNodeTBS for a key package leaf (source 1); needs more for others.
    signature: bytes

    @property
    def user_id(self) -> int:
        if len(self.identity) != 8:
            raise MlsError("credential identity is not a 64-bit user id")
        return int.from_bytes(self.identity, "big")


def read_leaf_node(reader: Reader) -> LeafNode:
    start = reader.at
    reader.vec()  # encryption_key
    signature_key = reader.vec()
    if reader.u16() != BASIC:
        raise MlsError("credential is not basic")
    identity = reader.vec()
    for _ in range(5):  # capabilities: versions, cipher_suites, extensions, proposals, creds
        reader.vec()
    source = reader.u8()
    not_before = not_after = 0
    if source == 1:
        not_before, not_after = reader.u64(), reader.u64()
    elif source == 3:
        reader.vec()  # parent_hash
    elif source != 2:
        raise MlsError(f"unknown leaf node source {source}")
    reader.vec()  # extensions
    tbs = reader.data[start : reader.at]
    signature = reader.vec()
    return LeafNode(signature_key, identity, source, not_before, not_after, tbs, signature)


@dataclass(frozen=True)
class KeyPackage:
    raw: bytes  # The KeyPackage struct, as an Add proposal carries it.
    leaf: LeafNode

    @property
    def user_id(self) -> int:
        return self.leaf.user_id


def read_key_package(data: bytes) -> KeyPackage:
    """A key package as op 26 carries it (bare, as davey sends it, or in an MLSMessage),
    its two signatures checked."""
    reader = Reader(data)
    if len(data) >= 4 and struct.unpack_from(">HH", data) == (MLS_10, KEY_PACKAGE):
        reader.at = 4
    start = reader.at
    if reader.u16() != MLS_10 or reader.u16() != CIPHERSUITE:
        raise MlsError("key package is not MLS 1.0 with ciphersuite 2")
    reader.vec()  # init_key
    leaf = read_leaf_node(reader)
    reader.vec()  # extensions
    tbs_end = reader.at
    signature = reader.vec()
    if reader.at != len(data):
        raise MlsError("trailing bytes after the key package")
    if leaf.source != 1:
        raise MlsError("key package leaf node not from a key package")
    if not verify_with_label(leaf.signature_key, "LeafNodeTBS", leaf.tbs, leaf.signature):
        raise MlsError("leaf node signature does not verify")
    content = data[start:tbs_end]
    if not verify_with_label(leaf.signature_key, "KeyPackageTBS", content, signature):
        raise MlsError("key package signature does not verify")
    return KeyPackage(data[start : reader.at], leaf)


# -- external proposals -----------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    message: bytes  # MLSMessage(PublicMessage)
    ref: bytes  # ProposalRef, as commits and revocations name it


def external_proposal(
    signer: Signer, group_id: bytes, epoch: int, proposal_type: int, body: bytes
) -> Proposal:
    """A PublicMessage from external sender 0, signed over FramedContentTBS (which holds no
    group context for an external sender)."""
    content = (
        vec(group_id)
        + struct.pack(">QBI", epoch, EXTERNAL, 0)
        + vec(b"")
        + bytes([PROPOSAL])
        + struct.pack(">H", proposal_type)
        + body
    )
    wire = struct.pack(">HH", MLS_10, PUBLIC_MESSAGE)
    signature = signer.sign_with_label("FramedContentTBS", wire + content)
    auth = vec(signature)
    ref = ref_hash("MLS 1.0 Proposal Reference", wire[2:] + content + auth)
    return Proposal(wire + content + auth, ref)


def add_proposal(signer: Signer, group_id: bytes, epoch: int, package: KeyPackage) -> Proposal:
    return external_proposal(signer, group_id, epoch, ADD, package.raw)


def remove_proposal(signer: Signer, group_id: bytes, epoch: int, leaf_index: int) -> Proposal:
    return external_proposal(signer, group_id, epoch, REMOVE, struct.pack(">I", leaf_index))


# -- commits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    message: bytes  # The MLSMessage, exactly as received.
    group_id: bytes
    epoch: int
    sender_leaf: int
    refs: list[bytes]
    inline: int  # Proposals carried by value (DAVE allows none).
    welcome: bytes  # What followed the commit in op 28 (b"" when it adds nobody).


def read_commit(data: bytes) -> Commit:
    """Op 28: an MLSMessage(PublicMessage) commit from a member, then perhaps a Welcome."""
    reader = Reader(data)
    if reader.u16() != MLS_10 or reader.u16() != PUBLIC_MESSAGE:
        raise MlsError("commit is not an MLS 1.0 public message")
    group_id = reader.vec()
    epoch = reader.u64()
    if reader.u8() != MEMBER:
        raise MlsError("commit not sent by a member")
    sender_leaf = reader.u32()
    reader.vec()  # authenticated_data
    if reader.u8() != COMMIT:
        raise MlsError("not a commit")
    proposals = Reader(reader.vec())
    refs: list[bytes] = []
    inline = 0
    while proposals.at < len(proposals.data):
        kind = proposals.u8()
        if kind == 2:
            refs.append(proposals.vec())
        else:
            inline += 1
            break  # An inline proposal: DAVE refuses the commit anyway.
    if inline == 0 and reader.u8():  # optional<UpdatePath>
        read_leaf_node(reader)
        reader.vec()  # nodes
    reader.vec()  # signature
    reader.vec()  # confirmation_tag
    reader.vec()  # membership_tag
    end = reader.at
    return Commit(data[:end], group_id, epoch, sender_leaf, refs, inline, data[end:])
