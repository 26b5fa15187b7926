"""DAVE (protocol version 1) as Discord's voice server runs it: MLS delivery service and
external sender for each channel's group.

The server keeps only what the whitepaper gives it: the group id (the channel id), the
epoch, which user sits at which leaf, the key packages of pending members and the proposals
of the epoch. It checks key packages (credential user id, lifetime, both signatures), sends
Add and Remove proposals signed as the external sender (op 27), takes the first commit of an
epoch (op 28) and announces it (op 29) to the group's members while the welcome goes to
those it adds (op 30), then runs the transition (ops 23 and 22). A member that flags an
invalid commit or welcome (op 31) is removed and added again from its next key package.

A commit is taken when it names at least one proposal of the epoch and none from elsewhere;
proposals it leaves out (a key package that came while the commit was in flight) are made
again in the next epoch. Not emulated: calls mixing DAVE and non-DAVE clients (protocol
transitions to and from 0), the sole-member reset, and resuming a voice session under DAVE.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.e2e.discord_emulator import mls

CLIENTS_CONNECT, CLIENT_DISCONNECT = 11, 13
PREPARE_TRANSITION, EXECUTE_TRANSITION, TRANSITION_READY, PREPARE_EPOCH = 21, 22, 23, 24
EXTERNAL_SENDER, KEY_PACKAGE, PROPOSALS, COMMIT_WELCOME = 25, 26, 27, 28
ANNOUNCE_COMMIT, WELCOME, INVALID_COMMIT_WELCOME = 29, 30, 31
APPEND, REVOKE = 0, 1
#: Seconds the server waits for every member's op 23 before executing a transition anyway.
TRANSITION_TIMEOUT = 1.0
#: The voice server's own identity in its external sender credential.
SERVER_IDENTITY = b"discord-voice-emulator"


class Participant(Protocol):
    """A client in the call: the bot over its voice websocket, or a simulated member."""

    user_id: int

    async def send_json(self, op: int, data: dict[str, Any]) -> None: ...

    async def send_binary(self, op: int, payload: bytes) -> None: ...


@dataclass
class _Proposed:
    kind: int  # mls.ADD or mls.REMOVE
    user_id: int
    proposal: mls.Proposal


@dataclass
class Group:
    """One channel's MLS group, as the voice server sees it."""

    channel_id: int
    signer: mls.Signer
    participants: list[Participant] = field(default_factory=list)
    established: bool = False
    epoch: int = 0
    leaves: list[int | None] = field(default_factory=list)
    packages: dict[int, mls.KeyPackage] = field(default_factory=dict)
    proposals: dict[bytes, _Proposed] = field(default_factory=dict)
    commits: list[mls.Commit] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    transition_id: int = 0
    waiting: dict[int, set[int]] = field(default_factory=dict)

    @property
    def group_id(self) -> bytes:
        return struct.pack(">Q", self.channel_id)

    def members(self) -> list[int]:
        return [user for user in self.leaves if user is not None]

    def participant(self, user_id: int) -> Participant | None:
        return next((p for p in self.participants if p.user_id == user_id), None)


class DaveServer:
    """The DAVE half of one voice server: its groups, keyed by channel."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.signer = mls.Signer()
        self.groups: dict[int, Group] = {}
        self._on_change = on_change
        self._tasks: set[asyncio.Task[None]] = set()

    def group(self, channel_id: int) -> Group:
        group = self.groups.get(channel_id)
        if group is None:
            group = self.groups[channel_id] = Group(channel_id, self.signer)
        return group

    def group_of(self, participant: Participant) -> Group | None:
        return next((g for g in self.groups.values() if participant in g.participants), None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- clients coming and going ------------------------------------------------------------

    async def join(self, participant: Participant, channel_id: int) -> None:
        """After its session description: who else is here (op 11), and the external sender
        (op 25) that its group needs before any key package is of use."""
        group = self.group(channel_id)
        others = [p for p in group.participants if p.user_id != participant.user_id]
        group.participants.append(participant)
        if others:
            ids = [str(p.user_id) for p in others]
            await participant.send_json(CLIENTS_CONNECT, {"user_ids": ids})
        for other in others:
            await other.send_json(CLIENTS_CONNECT, {"user_ids": [str(participant.user_id)]})
        package = mls.external_sender(self.signer, SERVER_IDENTITY)
        await participant.send_binary(EXTERNAL_SENDER, package)
        self._on_change()

    async def leave(self, participant: Participant) -> None:
        group = self.group_of(participant)
        if group is None:
            return
        group.participants.remove(participant)
        user_id = participant.user_id
        if group.participant(user_id) is not None:
            return  # The same member's newer connection is still there.
        group.packages.pop(user_id, None)
        for other in group.participants:
            await other.send_json(CLIENT_DISCONNECT, {"user_id": str(user_id)})
        if user_id in group.leaves:
            await self._propose(group, mls.REMOVE, user_id)
        if not group.participants:
            self.groups.pop(group.channel_id, None)
        self._on_change()

    async def send_unreadable(self, user_id: int) -> None:
        """Proposals nobody can process (a corrupt message, or one from a broken server):
        what a client does about a DAVE message it cannot handle."""
        for group in self.groups.values():
            participant = group.participant(user_id)
            if participant is not None:
                await participant.send_binary(PROPOSALS, bytes([APPEND]) + mls.vec(b"\x00\x01"))

    def settled(self, channel_id: int, user_id: int) -> bool:
        """`user_id` is in the channel's group, with nothing proposed that is not committed."""
        group = self.groups.get(channel_id)
        if group is None:
            return False
        return user_id in group.leaves and user_id not in group.packages and not group.proposals

    # -- what clients send -------------------------------------------------------------------

    async def binary(self, participant: Participant, op: int, payload: bytes) -> None:
        group = self.group_of(participant)
        if group is None:
            return
        if op == KEY_PACKAGE:
            await self._key_package(group, participant, payload)
        elif op == COMMIT_WELCOME:
            await self._commit(group, participant, payload)
        self._on_change()

    async def json(self, participant: Participant, op: int, data: dict[str, Any]) -> None:
        group = self.group_of(participant)
        if group is None:
            return
        if op == TRANSITION_READY:
            waiting = group.waiting.get(int(data.get("transition_id", -1)))
            if waiting is not None:
                waiting.discard(participant.user_id)
                if not waiting:
                    await self._execute(group, int(data["transition_id"]))
        elif op == INVALID_COMMIT_WELCOME and participant.user_id in group.leaves:
            # Back to pending: removed now, added again from its next key package.
            await self._propose(group, mls.REMOVE, participant.user_id)
        self._on_change()

    async def _key_package(self, group: Group, participant: Participant, data: bytes) -> None:
        try:
            package = mls.read_key_package(data)
        except mls.MlsError as exc:
            group.refused.append(f"key package from {participant.user_id}: {exc}")
            return
        if package.user_id != participant.user_id:
            group.refused.append(f"key package of {package.user_id} from {participant.user_id}")
            return
        if (package.leaf.not_before, package.leaf.not_after) != (0, mls.LIFETIME_MAX):
            group.refused.append(f"key package from {participant.user_id}: lifetime not maximal")
            return
        user_id = participant.user_id
        group.packages[user_id] = package
        # A pending member's previous package is replaced: its add is no longer to be made.
        stale = [
            r for r, p in group.proposals.items() if p.kind == mls.ADD and p.user_id == user_id
        ]
        if stale:
            for ref in stale:
                del group.proposals[ref]
            await self._broadcast_revoke(group, stale)
        removing = any(
            p.kind == mls.REMOVE and p.user_id == user_id for p in group.proposals.values()
        )
        if user_id in group.leaves and not removing:
            # Its old leaf goes first (a new connection, or a reset it did not flag).
            await self._propose(group, mls.REMOVE, user_id)
        if not group.established:
            # A newcomer to an unestablished group gets the adds already in flight.
            waiting = [p.proposal.message for p in group.proposals.values() if p.kind == mls.ADD]
            if waiting:
                await participant.send_binary(PROPOSALS, bytes([APPEND]) + _messages(waiting))
        await self._propose(group, mls.ADD, user_id)

    async def _propose(self, group: Group, kind: int, user_id: int) -> None:
        if kind == mls.ADD:
            proposal = mls.add_proposal(
                self.signer, group.group_id, group.epoch, group.packages[user_id]
            )
        else:
            proposal = mls.remove_proposal(
                self.signer, group.group_id, group.epoch, group.leaves.index(user_id)
            )
        group.proposals[proposal.ref] = _Proposed(kind, user_id, proposal)
        payload = bytes([APPEND]) + _messages([proposal.message])
        for other in self._proposal_audience(group, exclude=user_id):
            await other.send_binary(PROPOSALS, payload)

    def _proposal_audience(self, group: Group, exclude: int) -> list[Participant]:
        """Who may commit: the group's members, or before there is a group, every pending
        member (each with its own local group)."""
        if group.established:
            return [
                p
                for p in group.participants
                if p.user_id in group.leaves
                and p.user_id != exclude
                and p.user_id not in group.packages  # Flagged a commit, waits to be re-added.
            ]
        return [p for p in group.participants if p.user_id != exclude]

    async def _broadcast_revoke(self, group: Group, refs: list[bytes]) -> None:
        payload = bytes([REVOKE]) + mls.vec(b"".join(mls.vec(ref) for ref in refs))
        for other in self._proposal_audience(group, exclude=0):
            await other.send_binary(PROPOSALS, payload)

    async def _commit(self, group: Group, participant: Participant, data: bytes) -> None:
        try:
            commit = mls.read_commit(data)
        except mls.MlsError as exc:
            group.refused.append(f"commit from {participant.user_id}: {exc}")
            return
        problem = self._invalid(group, participant, commit)
        if problem:
            group.refused.append(f"commit from {participant.user_id}: {problem}")
            return
        group.commits.append(commit)
        before = [p for p in group.participants if p.user_id in group.leaves]
        if not group.established:  # The committer's local group becomes the call's.
            group.leaves = [participant.user_id]
            group.packages.pop(participant.user_id, None)
            before = [participant]
        taken = [group.proposals.pop(ref) for ref in commit.refs]
        for gone in (p for p in taken if p.kind == mls.REMOVE):
            group.leaves[group.leaves.index(gone.user_id)] = None
        while group.leaves and group.leaves[-1] is None:
            group.leaves.pop()
        added: list[int] = []
        for add in (p for p in taken if p.kind == mls.ADD):
            slot = next((i for i, u in enumerate(group.leaves) if u is None), len(group.leaves))
            if slot == len(group.leaves):
                group.leaves.append(add.user_id)
            else:
                group.leaves[slot] = add.user_id
            group.packages.pop(add.user_id, None)
            added.append(add.user_id)
        group.established = True
        group.epoch = commit.epoch + 1
        group.transition_id += 1
        transition = group.transition_id
        left_over = list(group.proposals.values())
        group.proposals.clear()
        tid = struct.pack(">H", transition)
        audience = before + [p for p in group.participants if p.user_id in added]
        group.waiting[transition] = {p.user_id for p in audience if p.user_id in group.leaves}
        removed = {proposed.user_id for proposed in taken if proposed.kind == mls.REMOVE}
        for member in before:
            if member.user_id not in removed:
                await member.send_binary(ANNOUNCE_COMMIT, tid + commit.message)
        for user_id in added:
            welcomed = group.participant(user_id)
            if welcomed is not None:
                await welcomed.send_binary(WELCOME, tid + commit.welcome)
        self._later(TRANSITION_TIMEOUT, lambda: self._execute(group, transition))
        # Proposals the commit did not take are made again for the new epoch.
        for stale in left_over:
            if stale.kind == mls.ADD and stale.user_id in group.packages:
                await self._propose(group, mls.ADD, stale.user_id)
            elif stale.kind == mls.REMOVE and stale.user_id in group.leaves:
                await self._propose(group, mls.REMOVE, stale.user_id)

    def _invalid(self, group: Group, participant: Participant, commit: mls.Commit) -> str:
        if commit.group_id != group.group_id:
            return "another group"
        if commit.epoch != group.epoch:
            return f"epoch {commit.epoch}, the group is at {group.epoch}"
        if commit.inline or not commit.refs:
            return "no proposal references, or proposals by value"
        if any(ref not in group.proposals for ref in commit.refs):
            return "references a proposal not made in this epoch"
        if group.established:
            if participant.user_id not in group.leaves:
                return "not a member"
            if group.leaves.index(participant.user_id) != commit.sender_leaf:
                return "sent from another member's leaf"
        return ""

    async def _execute(self, group: Group, transition: int) -> None:
        if group.waiting.pop(transition, None) is None:
            return
        for member in group.participants:
            if member.user_id in group.leaves:
                await member.send_json(EXECUTE_TRANSITION, {"transition_id": transition})
        self._on_change()

    def _later(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):
                await action()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _messages(messages: list[bytes]) -> bytes:
    return mls.vec(b"".join(messages))
