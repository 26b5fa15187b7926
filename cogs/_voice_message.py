"""Posting a Discord voice message, which discord.py 2.7 has no helper for (private module).

A voice message is a channel message with flag IS_VOICE_MESSAGE (8192), no content and
exactly one Ogg Opus attachment carrying `duration_secs` and `waveform`. It cannot be an
edit, so it is posted as a new message through discord.py's HTTP layer, which keeps its rate
limiting and retries. Having no text, it says who asked for it by replying to the command's
public answer.
"""

from __future__ import annotations

import io
import json
from typing import Any

import discord
from discord.http import Route

from bot.audio.voice_message import VoiceMessage
from bot.errors import BotError
from bot.locales import line

__all__ = [
    "IS_VOICE_MESSAGE",
    "VOICE_MESSAGE_FILENAME",
    "can_reply",
    "can_send_voice_messages",
    "check_member_may_send_voice_messages",
    "send",
]

IS_VOICE_MESSAGE = 1 << 13
VOICE_MESSAGE_FILENAME = "voice-message.ogg"


def can_send_voice_messages(channel: Any, me: Any) -> bool:
    """Whether the bot may post a voice message here (Send Voice Messages, and Attach Files
    and Send Messages, which Discord also requires)."""
    permissions_for = getattr(channel, "permissions_for", None)
    if permissions_for is None or me is None:
        return False
    permissions: discord.Permissions = permissions_for(me)
    return bool(
        permissions.send_voice_messages and permissions.attach_files and permissions.send_messages
    )


def can_reply(channel: Any, me: Any) -> bool:
    """Whether the bot may post a reply here: Discord requires Read Message History."""
    permissions_for = getattr(channel, "permissions_for", None)
    if permissions_for is None or me is None:
        return False
    return bool(permissions_for(me).read_message_history)


def check_member_may_send_voice_messages(
    interaction: discord.Interaction[Any], *, chosen: bool
) -> None:
    """Refuse, before anything is spent, a voice message for a member who may not send one
    in this channel: the bot posts it, but on their behalf. Discord resolves the member's
    roles and this channel's overwrites into `interaction.permissions`."""
    if interaction.permissions.send_voice_messages:
        return
    how = line("voice_message.leave_out" if chosen else "voice_message.your_choice")
    raise BotError(user_message=line("voice_message.not_allowed", how=how))


async def send(
    http: discord.http.HTTPClient,
    channel_id: int,
    message: VoiceMessage,
    *,
    reply_to: int | None = None,
) -> dict[str, Any]:
    """Post `message` to the channel, as a reply to `reply_to` if given (posted anyway if
    that message is gone); raises discord.HTTPException when Discord refuses."""
    payload: dict[str, Any] = {
        "flags": IS_VOICE_MESSAGE,
        "attachments": [
            {
                "id": "0",
                "filename": VOICE_MESSAGE_FILENAME,
                "duration_secs": round(message.duration, 2),
                "waveform": message.waveform,
            }
        ],
        "allowed_mentions": {"parse": [], "replied_user": False},
    }
    if reply_to is not None:
        payload["message_reference"] = {
            "message_id": str(reply_to),
            "channel_id": str(channel_id),
            "fail_if_not_exists": False,
        }
    file = discord.File(io.BytesIO(message.data), filename=VOICE_MESSAGE_FILENAME)
    form: list[dict[str, Any]] = [
        {"name": "payload_json", "value": json.dumps(payload)},
        {
            "name": "files[0]",
            "value": file.fp,
            "filename": VOICE_MESSAGE_FILENAME,
            "content_type": "audio/ogg",
        },
    ]
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
    result: dict[str, Any] = await http.request(route, form=form, files=[file])
    return result
