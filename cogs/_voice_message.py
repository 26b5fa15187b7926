"""Posting a Discord voice message, which discord.py 2.7 has no helper for (private module).

A voice message is a channel message with flag IS_VOICE_MESSAGE (8192), no content and
exactly one Ogg Opus attachment carrying `duration_secs` and `waveform`. It cannot be an
edit, so it is posted as a new message through discord.py's HTTP layer, which keeps its rate
limiting and retries.
"""

from __future__ import annotations

import io
import json
from typing import Any

import discord
from discord.http import Route

from bot.audio.voice_message import VoiceMessage

__all__ = ["IS_VOICE_MESSAGE", "VOICE_MESSAGE_FILENAME", "can_send_voice_messages", "send"]

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


async def send(
    http: discord.http.HTTPClient, channel_id: int, message: VoiceMessage
) -> dict[str, Any]:
    """Post `message` to the channel; raises discord.HTTPException when Discord refuses."""
    payload = {
        "flags": IS_VOICE_MESSAGE,
        "attachments": [
            {
                "id": "0",
                "filename": VOICE_MESSAGE_FILENAME,
                "duration_secs": round(message.duration, 2),
                "waveform": message.waveform,
            }
        ],
        "allowed_mentions": {"parse": []},
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
