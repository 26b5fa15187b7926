"""Reproduces, with davey alone, the commit race that leaves a DAVE member inaudible.

Run from the repository root:  PYTHONPATH=. python docs/dave_commit_race.py

A member (the "bot") in an established group gets two Add proposals in one epoch, as when two
people join a call at the same moment. It commits after each (commit 1 adds Bob; commit 2
adds Bob and Carol). The voice server announces the first commit it received, commit 1.
libdave keeps the exact commit it sent and compares it with the announced one; davey 0.1.7
merges its latest pending commit (commit 2) instead, so its group now holds Carol while
everyone else's does not. Nobody can decrypt the bot from then on, and the voice server's
next proposal (Carol's add, again, for the new epoch) raises DuplicateSignatureKey.

The voice server's side (external sender, signed proposals) is the e2e emulator's `mls`.
"""

from __future__ import annotations

import struct

import davey

from tests.e2e.discord_emulator import mls

CHANNEL = 5678
APPEND = davey.ProposalsOperationType.append


def main() -> None:
    server = mls.Signer()
    external = mls.external_sender(server, b"voice-server")
    group_id = struct.pack(">Q", CHANNEL)
    bot, alice, bob, carol = (davey.DaveSession(1, uid, CHANNEL) for uid in (1, 2, 3, 4))
    for session in (bot, alice, bob, carol):
        session.set_external_sender(external)

    def add(epoch: int, session: davey.DaveSession) -> bytes:
        package = mls.read_key_package(session.get_serialized_key_package())
        return mls.vec(mls.add_proposal(server, group_id, epoch, package).message)

    # Epoch 0 -> 1: the bot makes the group with Alice.
    first = bot.process_proposals(APPEND, add(0, alice))
    assert first is not None
    assert first.welcome is not None
    bot.process_commit(first.commit)
    alice.process_welcome(first.welcome)

    # Bob and Carol connect at once: two proposals in epoch 1, two commits from the bot.
    bob_add, carol_add = add(1, bob), add(1, carol)
    one = bot.process_proposals(APPEND, bob_add)
    two = bot.process_proposals(APPEND, carol_add)
    assert one is not None
    assert two is not None
    assert one.welcome is not None
    alice.process_proposals(APPEND, bob_add)
    alice.process_proposals(APPEND, carol_add)

    # The server announces the first commit of the epoch: commit 1 (Bob only).
    bot.process_commit(one.commit)
    alice.process_commit(one.commit)
    bob.process_welcome(one.welcome)
    print("bot's group:  ", sorted(bot.get_user_ids()))
    print("alice's group:", sorted(alice.get_user_ids()))
    print("bob's group:  ", sorted(bob.get_user_ids()))

    frame = bot.encrypt_opus(b"\xfc" + bytes(40))
    for name, session in (("alice", alice), ("bob", bob)):
        try:
            session.decrypt(1, davey.MediaType.audio, frame)
            print(f"{name} decrypts the bot")
        except ValueError as exc:
            print(f"{name} cannot decrypt the bot: {exc}")

    # The server proposes Carol again for epoch 2: the bot cannot even process it.
    try:
        bot.process_proposals(APPEND, add(2, carol))
    except ValueError as exc:
        print("next proposal:", exc)


if __name__ == "__main__":
    main()
