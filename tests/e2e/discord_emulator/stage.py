"""Stage speakers: `PATCH /guilds/{guild}/voice-states/@me`, refused as Discord refuses it.

Discord's caveats (Modify Current User Voice State): `channel_id` must be a Stage the user is
already in; unsuppressing yourself needs Mute Members in that channel (suppressing yourself is
always allowed); setting `request_to_speak_timestamp` needs Request to Speak (clearing it is
always allowed). Suppressing clears the raised hand. An accepted change is dispatched as
VOICE_STATE_UPDATE, and while suppressed the member's audio is not heard (`voice`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.e2e.discord_emulator.messages import DiscordError, invalid
from tests.e2e.discord_emulator.state import (
    BOT_ID,
    MUTE_MEMBERS,
    REQUEST_TO_SPEAK,
    VoiceState,
    World,
)

if TYPE_CHECKING:
    from tests.e2e.discord_emulator.records import RestRequest
    from tests.e2e.discord_emulator.server import Emulator

ROUTE = r"/guilds/(?P<guild>\d+)/voice-states/@me"


def _snowflake(value: Any) -> int | None:
    """Discord takes snowflakes as strings or numbers."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


class StageApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def edit_my_voice_state(self, request: web.Request, record: RestRequest) -> web.Response:
        world = self.emu.worlds.get(int(request["match"]["guild"]))
        if world is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        body = record.json
        if not isinstance(body, dict):
            raise invalid("_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        state = world.voice_states.get(BOT_ID)
        if state is None or state.channel_id is None:
            raise DiscordError(404, 10065, "Unknown Voice State")
        channel_id = _snowflake(body.get("channel_id"))
        if channel_id != state.channel_id or channel_id not in world.stage_channels:
            raise invalid(
                "channel_id",
                "CHANNEL_NOT_CONNECTED",
                "Must be the stage channel the user is connected to.",
            )
        permissions = world.channel_permissions(BOT_ID, channel_id)
        suppress = body.get("suppress")
        if "suppress" in body and not isinstance(suppress, bool):
            raise invalid("suppress", "BASE_TYPE_BOOLEAN", "Must be either true or false.")
        if suppress is False and not permissions & MUTE_MEMBERS:
            raise DiscordError(403, 50013, "Missing Permissions")
        raised = body.get("request_to_speak_timestamp")
        if raised is not None:
            if not isinstance(raised, str) or not _iso8601(raised):
                raise invalid(
                    "request_to_speak_timestamp", "DATE_TIME_TYPE_PARSE", "Not an ISO8601 time."
                )
            if not permissions & REQUEST_TO_SPEAK:
                raise DiscordError(403, 50013, "Missing Permissions")
        if "request_to_speak_timestamp" in body:
            state.request_to_speak_timestamp = raised
        if isinstance(suppress, bool):
            state.suppress = suppress
            if suppress:
                state.request_to_speak_timestamp = None
        await self.dispatch(state, world)
        return web.Response(status=204)

    async def dispatch(self, state: VoiceState, world: World) -> None:
        member = world.members[state.user_id]
        payload = state.payload(world.guild_id, member)
        await self.emu.gateway.dispatch("VOICE_STATE_UPDATE", payload, world.guild_id)
        self.emu.changes.notify()


def _iso8601(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
