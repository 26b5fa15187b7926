"""Messages as Discord builds, checks and refuses them, for every route that makes or edits one.

Kept apart from the routes (`rest`) so the rules live in one place: what a message must
carry, what a voice message must carry, what the bot may post in a channel (its permissions
there, roles and overwrites included), what a reply may point at, and how a follow-up to a
deferred answer resolves it.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from tests.e2e.discord_emulator.state import (
    APP_ID,
    ATTACH_FILES,
    BOT_ID,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_VOICE_MESSAGES,
    VIEW_CHANNEL,
    new_message,
    snowflake,
    timestamp,
)

if TYPE_CHECKING:
    from tests.e2e.discord_emulator.records import Interaction, RestRequest
    from tests.e2e.discord_emulator.server import Emulator

MAX_CONTENT = 2000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_VOICE_MESSAGE = 1 << 13
#: A voice message's waveform: at most 256 one-byte points.
MAX_WAVEFORM_POINTS = 256
#: Message types: a default message, a reply, and an interaction's answer.
DEFAULT, REPLY, CHAT_INPUT_COMMAND = 0, 19, 20


class DiscordError(Exception):
    """A refusal, sent as Discord's error JSON (`code`, `message`, optional `errors`)."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def invalid(path: str, code: str, message: str) -> DiscordError:
    """50035 Invalid Form Body, with the nested `errors` tree Discord sends."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        tree = {part: tree}
    return DiscordError(400, 50035, "Invalid Form Body", tree)


def body_of(record: RestRequest) -> dict[str, Any]:
    return record.json if isinstance(record.json, dict) else {}


def flags_of(record: RestRequest) -> int:
    return int(body_of(record).get("flags") or 0)


def check_message(record: RestRequest, *, creating: bool, upload_limit: int) -> None:
    """Size, content and embed limits; a new message must carry something."""
    body = body_of(record)
    total = sum(len(upload.data) for upload in record.files)
    if total > upload_limit:
        raise DiscordError(413, 40005, "Request entity too large")
    content = body.get("content")
    if content is not None and len(content) > MAX_CONTENT:
        raise invalid(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    if len(body.get("embeds") or []) > 10:
        raise invalid("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if creating and not (content or body.get("embeds") or record.files or body.get("components")):
        raise DiscordError(400, 50006, "Cannot send an empty message")
    if body.get("components"):
        # Imported here: the components module builds its refusals with `invalid`, above.
        from tests.e2e.discord_emulator.components import check_components

        check_components(body["components"])


def check_voice_message(record: RestRequest) -> None:
    """A message flagged IS_VOICE_MESSAGE, refused as Discord refuses it: no content or
    embeds (50161), exactly one audio file (50159), and each attachment's `duration_secs`
    and base64 `waveform` of at most 256 points (50160)."""
    body = body_of(record)
    if not flags_of(record) & IS_VOICE_MESSAGE:
        return
    if body.get("content") or body.get("embeds") or body.get("sticker_ids"):
        raise DiscordError(400, 50161, "Voice messages do not support additional content.")
    if len(record.files) != 1 or not (record.files[0].content_type or "").startswith("audio/"):
        raise DiscordError(400, 50159, "Voice messages must have a single audio attachment.")
    attachments = body.get("attachments") or []
    if len(attachments) != 1:
        raise DiscordError(400, 50160, "Voice messages must have supporting metadata.")
    (meta,) = attachments
    duration = meta.get("duration_secs")
    waveform = meta.get("waveform")
    if not isinstance(duration, int | float) or duration <= 0 or not isinstance(waveform, str):
        raise DiscordError(400, 50160, "Voice messages must have supporting metadata.")
    try:
        points = base64.b64decode(waveform, validate=True)
    except binascii.Error:
        raise invalid("attachments.0.waveform", "BASE_TYPE_BAD", "Not base64.") from None
    if not 1 <= len(points) <= MAX_WAVEFORM_POINTS:
        raise invalid("attachments.0.waveform", "BASE_TYPE_MAX_LENGTH", "At most 256 points.")


def check_channel_post(emu: Emulator, record: RestRequest, channel_id: int) -> None:
    """The bot's permissions in a server channel (roles and overwrites, as Discord computes
    them): View Channel and Send Messages to post, Attach Files for files, Send Voice
    Messages for a voice message, Read Message History to reply (403/50013 otherwise)."""
    world = emu.world_of_channel(channel_id)
    if world is None or channel_id in world.dm_channels:
        return
    have = world.channel_permissions(BOT_ID, channel_id)
    if not have & VIEW_CHANNEL:
        raise DiscordError(403, 50001, "Missing Access")
    needed = SEND_MESSAGES
    if record.files:
        needed |= ATTACH_FILES
    if flags_of(record) & IS_VOICE_MESSAGE:
        needed |= SEND_VOICE_MESSAGES
    if body_of(record).get("message_reference"):
        needed |= READ_MESSAGE_HISTORY
    if needed & ~have:
        raise DiscordError(403, 50013, "Missing Permissions")


def visible_messages(emu: Emulator, channel_id: int) -> list[dict[str, Any]]:
    """What everyone in the channel can see and reply to: the bot's posts and the public
    answers to interactions (an ephemeral one is its member's alone)."""
    found = [m for m in emu.channel_messages if int(m["channel_id"]) == channel_id]
    for interaction in emu.interactions.values():
        answers = [] if interaction.deleted else [interaction.original]
        for message in [*answers, *interaction.followups]:
            if (
                message is not None
                and int(message["channel_id"]) == channel_id
                and not int(message.get("flags") or 0) & EPHEMERAL
            ):
                found.append(message)
    return found


def resolve_reference(emu: Emulator, record: RestRequest, channel_id: int) -> dict[str, Any] | None:
    """The message a reply points at. One that is unknown here (or ephemeral, which nobody
    else sees) is refused with 50035, unless `fail_if_not_exists` is false: then the message
    is posted as no reply, as Discord does."""
    reference = body_of(record).get("message_reference")
    if not reference:
        return None
    wanted = str(reference.get("message_id"))
    in_channel = str(reference.get("channel_id") or channel_id) == str(channel_id)
    target = next(
        (m for m in visible_messages(emu, channel_id) if m["id"] == wanted and in_channel), None
    )
    if target is None and reference.get("fail_if_not_exists", True):
        raise invalid("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
    return target


def build_message(
    emu: Emulator,
    record: RestRequest,
    channel_id: int,
    *,
    old: dict[str, Any] | None = None,
    interaction: Interaction | None = None,
    replying_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message as Discord stores it: new, or `old` with the request's changes."""
    body = body_of(record)
    message = (
        dict(old)
        if old is not None
        else new_message(
            channel_id,
            emu.world.bot.user(),
            kind=DEFAULT if interaction is None else CHAT_INPUT_COMMAND,
        )
    )
    if old is not None:
        message["edited_timestamp"] = timestamp()
    if interaction is not None:
        message["webhook_id"] = str(APP_ID)
        message["application_id"] = str(APP_ID)
        if "guild_id" in interaction.payload:
            message["guild_id"] = interaction.payload["guild_id"]
    for key in ("content", "embeds", "components", "flags"):
        if key in body and body[key] is not None:
            message[key] = body[key]
    if old is not None and "content" in body:
        message["flags"] = message.get("flags", 0) & ~LOADING
    if replying_to is not None:
        message["type"] = REPLY
        message["message_reference"] = {
            "type": 0,
            "message_id": replying_to["id"],
            "channel_id": replying_to["channel_id"],
        }
        message["referenced_message"] = replying_to
    kept = message.get("attachments", [])
    if "attachments" in body:
        wanted = {str(a.get("id")) for a in body["attachments"] or []}
        kept = [a for a in kept if a["id"] in wanted]
    new = [
        _attachment(upload.filename, upload.data, upload.content_type, channel_id)
        for upload in record.files
    ]
    message["attachments"] = [*kept, *new]
    if flags_of(record) & IS_VOICE_MESSAGE and new:
        # Discord keeps a voice message's duration and waveform on its attachment.
        (meta,) = body["attachments"]
        new[-1].update(duration_secs=meta["duration_secs"], waveform=meta["waveform"])
    return message


def _attachment(
    filename: str, data: bytes, content_type: str | None, channel_id: int
) -> dict[str, Any]:
    attachment_id = str(snowflake())
    path = f"attachments/{channel_id}/{attachment_id}/{filename}"
    return {
        "id": attachment_id,
        "filename": filename,
        "size": len(data),
        "url": f"https://cdn.discordapp.com/{path}",
        "proxy_url": f"https://media.discordapp.net/{path}",
        "content_type": content_type,
    }


def resolve_deferral(
    emu: Emulator, record: RestRequest, interaction: Interaction
) -> dict[str, Any] | None:
    """A follow-up while a deferred answer is still loading ("is thinking…") does not make a
    new message: Discord turns it into the answer itself, which keeps the deferral's
    visibility (an ephemeral deferral stays private whatever flags the follow-up asks for).
    Once the answer has been edited, follow-ups are new messages with their own flags.
    Returns the resolved answer, or None when the follow-up is a message of its own."""
    original = interaction.original
    if (
        interaction.callback_type != 5
        or original is None
        or interaction.deleted
        or not int(original.get("flags") or 0) & LOADING
    ):
        return None
    channel_id = int(original["channel_id"])
    message = build_message(emu, record, channel_id, old=original, interaction=interaction)
    message["flags"] = (int(original.get("flags") or 0) & EPHEMERAL) | (
        flags_of(record) & ~EPHEMERAL
    )
    message["edited_timestamp"] = None  # It shows as the answer, not as an edit.
    interaction.original = message
    return message
